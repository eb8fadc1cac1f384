"""reprolib.train: determinism, the step schedule, resume after a kill, checkpoint errors, atomic
writes, the lock, the checkpoint schedule, DataLoader workers, mixed precision, the projection."""
import contextlib
import errno
import io
import multiprocessing as mp
import time

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from reprolib import train as T


def _setup(seed=0):
    T.seed_everything(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 8, 3, padding=1), torch.nn.LeakyReLU(0.2),
                                torch.nn.Dropout(0.1), torch.nn.Conv2d(8, 2, 3, padding=1))
    target = torch.nn.Conv2d(2, 2, 3, padding=1)
    torch.manual_seed(123)
    torch.nn.init.normal_(target.weight)

    def batch_fn(step):
        rng = np.random.default_rng([seed, step])
        x = torch.from_numpy(rng.standard_normal((4, 2, 12, 12)).astype(np.float32))
        with torch.no_grad():
            y = target(x)
        return x, y

    def loss_fn(m, batch):
        x, y = batch
        return torch.nn.functional.l1_loss(m(x), y)

    def evaluate(m):
        x, y = batch_fn(10_000)
        return {"val_l1": torch.nn.functional.l1_loss(m(x), y).item()}

    return model, batch_fn, loss_fn, evaluate


def _run(ckpt, steps, stop_after=None, **kw):
    model, batch_fn, loss_fn, evaluate = _setup()
    cfg = T.TrainConfig(steps=steps, lr=1e-2, milestones=(30,), log_every=5, checkpoint_every=10,
                        eval_every=20, **kw)
    if stop_after is not None:  # simulate a kill: stop feeding batches after `stop_after` steps
        def batch_fn_killed(step, _b=batch_fn):
            if step >= stop_after:
                raise KeyboardInterrupt
            return _b(step)
        try:
            T.train(model, batch_fn_killed, loss_fn, cfg, checkpoint=ckpt, evaluate_fn=evaluate, progress=False)
        except KeyboardInterrupt:
            return None, None
    hist = T.train(model, batch_fn, loss_fn, cfg, checkpoint=ckpt, evaluate_fn=evaluate, progress=False)
    return model, hist


def test_same_seed_same_weights(tmp_path):
    m1, h1 = _run(None, 40)
    m2, h2 = _run(None, 40)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    assert h1.curves == h2.curves
    assert h1.curves["loss"][-1]["value"] < h1.curves["loss"][0]["value"]  # it learns


def test_resume_after_interruption_gives_identical_result(tmp_path):
    ref, ref_hist = _run(None, 40)
    ckpt = tmp_path / "ckpt.pt"
    model, hist = _run(ckpt, 40, stop_after=23)
    assert model is None and ckpt.is_file()
    state = torch.load(ckpt, weights_only=False)
    assert state["step"] == 20  # last checkpoint before the kill
    model, hist = _run(ckpt, 40)
    assert hist.resumed_from == 20
    for a, b in zip(ref.parameters(), model.parameters()):
        assert torch.equal(a, b)
    assert hist.last("val_l1") == ref_hist.last("val_l1")


def test_finished_run_is_not_retrained(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    _, h1 = _run(ckpt, 20)
    _, h2 = _run(ckpt, 20)
    assert h2.resumed_from == 20 and h2.last("val_l1") == h1.last("val_l1")


def test_step_schedule():
    cfg = T.TrainConfig(steps=100, lr=1e-4, milestones=(50, 80), gamma=0.1)
    assert T._lr_at(0, cfg) == 1e-4
    assert T._lr_at(50, cfg) == pytest.approx(1e-5)
    assert T._lr_at(99, cfg) == pytest.approx(1e-6)


def test_bad_config_and_nan_loss():
    with pytest.raises(ValueError):
        T.TrainConfig(steps=0)
    model, batch_fn, _, _ = _setup()
    with pytest.raises(FloatingPointError, match="loss is nan"):
        T.train(model, batch_fn, lambda m, b: torch.tensor(float("nan"), requires_grad=True),
                T.TrainConfig(steps=3), progress=False)


def test_epoch_batch_is_an_epoch_shuffle_and_a_function_of_the_step():
    from reprolib.train import epoch_batch

    seen = np.concatenate([epoch_batch(10, 3, 0, 5, s) for s in range(3)])
    assert len(set(seen.tolist())) == 9                      # one epoch: no repeats, last partial dropped
    np.testing.assert_array_equal(epoch_batch(10, 3, 0, 5, 4), epoch_batch(10, 3, 0, 5, 4))
    assert not np.array_equal(epoch_batch(10, 3, 0, 5, 0), epoch_batch(10, 3, 0, 4, 0))  # streams differ
    # without drop_last the epoch has ceil(n / batch) steps, the last wrapping to the epoch's start
    order = np.random.default_rng([0, 1, 0]).permutation(5)
    np.testing.assert_array_equal(epoch_batch(5, 2, 0, 1, 2, drop_last=False), order[[4, 0]])
    np.testing.assert_array_equal(epoch_batch(5, 2, 0, 1, 3, drop_last=False),
                                  np.random.default_rng([0, 1, 1]).permutation(5)[:2])


# --- 1. a checkpoint that cannot be resumed is an error, never a silent restart

def test_unreadable_checkpoint_is_an_error_not_a_restart(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    assert T.load_checkpoint(ckpt) is None                           # no file: a new run
    ckpt.write_bytes(b"partial write")                               # torn by a kill
    with pytest.raises(RuntimeError, match=r"cannot read the checkpoint .*ckpt\.pt.*rename or delete ckpt\.pt"):
        _run(ckpt, 10)                                               # (T.CheckpointError, a RuntimeError)
    assert ckpt.read_bytes() == b"partial write"                     # not overwritten
    torch.save({"weights": torch.zeros(1)}, ckpt)                    # another format
    with pytest.raises(T.CheckpointError, match="not a checkpoint of reprolib.train"):
        T.load_checkpoint(ckpt)


def test_checkpoint_of_another_configuration_is_an_error(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    _run(ckpt, 20)
    model, batch_fn, loss_fn, _ = _setup()
    with pytest.raises(RuntimeError, match="belongs to another configuration"):
        T.train(model, batch_fn, loss_fn, T.TrainConfig(steps=10, lr=5e-3), checkpoint=ckpt, progress=False)
    assert torch.load(ckpt, weights_only=False)["step"] == 20        # left as it was


# --- 2. atomic writes: a per-process temporary, removed when the write fails

def test_failed_write_leaves_the_previous_checkpoint_and_no_temporary(tmp_path, monkeypatch):
    ckpt = tmp_path / "ckpt.pt"
    _run(ckpt, 40, stop_after=13)                                    # a checkpoint at step 10
    real_save = torch.save

    def disk_full(obj, f, *a, **kw):                                 # writes part, then the disk is full
        with open(f, "wb") if isinstance(f, (str, bytes, type(tmp_path))) else contextlib.nullcontext(f) as out:
            out.write(b"PK\x03\x04 part of a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(RuntimeError, match=rf"no space left in {tmp_path}.*needs about [0-9,]+ bytes"):
        _run(ckpt, 40)
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "ckpt.pt.lock"]   # no temporary left
    assert T.load_checkpoint(ckpt)["step"] == 10                     # the previous one, intact


# --- 3. a lock: two processes training one configuration, exactly one trains

def _train_in_child(ckpt, barrier, queue):
    try:
        torch.set_num_threads(1)
        model, batch_fn, loss_fn, _ = _setup()

        def slow(step):                                              # long enough for the other to arrive
            time.sleep(0.1)
            return batch_fn(step)

        out = io.StringIO()
        barrier.wait()
        with contextlib.redirect_stdout(out):
            hist = T.train(model, slow, loss_fn, T.TrainConfig(steps=30, lr=1e-2, checkpoint_every=5),
                           checkpoint=ckpt, progress=False)
        queue.put((hist.resumed_from, {k: v.numpy() for k, v in model.state_dict().items()}, out.getvalue()))
    except BaseException as e:
        queue.put(repr(e))


def test_two_processes_one_configuration_exactly_one_trains(tmp_path):
    ctx = mp.get_context("spawn")
    ckpt, barrier, queue = tmp_path / "ckpt.pt", ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_train_in_child, args=(ckpt, barrier, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=300) for _ in procs]
    finally:
        for p in procs:
            p.join(60)
            p.kill()
    assert all(isinstance(r, tuple) for r in results), results
    (first, w1, out1), (second, w2, out2) = sorted(results, key=lambda r: r[0])
    assert (first, second) == (0, 30)                                # one trained, the other loaded its result
    assert "waiting for" in out2 and "held by pid" in out2 and "waiting" not in out1
    for k in w1:
        np.testing.assert_array_equal(w1[k], w2[k])
    assert T.load_checkpoint(ckpt)["step"] == 30                     # whole, not torn
    assert not list(tmp_path.glob("*.tmp"))


# --- 4. the checkpoint schedule: steps, minutes, keep_last

def test_default_schedule_writes_what_it_wrote_before(tmp_path, monkeypatch):
    steps = []
    real = T._save
    monkeypatch.setattr(T, "_save", lambda state, *a: (steps.append(state["step"]), real(state, *a)))
    _run(tmp_path / "ckpt.pt", 40)
    assert steps == [10, 20, 30, 40]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "ckpt.pt.lock"]
    _run(tmp_path / "ckpt.pt", 40)
    assert steps == [10, 20, 30, 40]                                  # a finished run is not written again


def test_checkpoint_minutes_and_keep_last(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    _run(ckpt, 25, checkpoint_minutes=1e-9, keep_last=3)             # every step is "a minute later"
    assert sorted(p.name for p in tmp_path.glob("ckpt*.pt")) == ["ckpt.pt", "ckpt.step23.pt", "ckpt.step24.pt"]
    assert [T.load_checkpoint(tmp_path / f"ckpt{s}.pt")["step"] for s in ("", ".step23", ".step24")] == [25, 23, 24]
    # how checkpoints are written is not in the repr that callers hash into keys, which stays as it was
    assert repr(T.TrainConfig(steps=3, keep_last=3, checkpoint_minutes=5)) == repr(T.TrainConfig(steps=3)) == (
        "TrainConfig(steps=3, lr=0.0001, milestones=(), gamma=0.1, weight_decay=0.0, eval_every=0, "
        "log_every=10, checkpoint_every=50, grad_clip=None)")
    assert "amp='bf16'" in repr(T.TrainConfig(steps=3, amp="bf16"))


def test_corrupt_latest_names_the_previous_kept_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    _run(ckpt, 40, stop_after=33, keep_last=2)                      # latest step 30, step 20 kept
    ckpt.write_bytes(b"torn")
    with pytest.raises(T.CheckpointError, match=r"restore the previous ckpt\.step20\.pt"):
        _run(ckpt, 40, keep_last=2)


# --- 5. batches prepared in DataLoader workers, moved to the device in one place

def test_dataloader_workers_give_the_same_run(tmp_path):
    m0, h0 = _run(None, 40)
    model, batch_fn, loss_fn, evaluate = _setup()
    cfg = T.TrainConfig(steps=40, lr=1e-2, milestones=(30,), log_every=5, checkpoint_every=10, eval_every=20)
    h2 = T.train(model, batch_fn, loss_fn, cfg, evaluate_fn=evaluate, progress=False, device="cpu", num_workers=2)
    for (k, a), b in zip(m0.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k
    assert h0.curves == h2.curves


def test_to_device_moves_nested_batches():
    batch = ([torch.zeros(2)], {"boxes": torch.ones(1, 4), "label": "car"}, (torch.zeros(1),))
    moved = T.to_device(batch, "meta")
    assert moved[0][0].device.type == "meta" and moved[1]["boxes"].device.type == "meta"
    assert moved[1]["label"] == "car" and isinstance(moved[2], tuple) and moved[2][0].device.type == "meta"


# --- 6. mixed precision

def test_amp_none_is_the_plain_float32_recipe_and_bf16_runs(tmp_path):
    model, batch_fn, loss_fn, _ = _setup()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)              # the recipe, written out
    model.train()
    for step in range(12):
        loss = loss_fn(model, batch_fn(step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    ours, batch_fn, loss_fn, _ = _setup()
    T.train(ours, batch_fn, loss_fn, T.TrainConfig(steps=12, lr=1e-2), progress=False)
    for a, b in zip(model.parameters(), ours.parameters()):
        assert torch.equal(a, b)
    bf16, batch_fn, loss_fn, _ = _setup()
    hist = T.train(bf16, batch_fn, loss_fn, T.TrainConfig(steps=12, lr=1e-2, amp="bf16"), progress=False)
    assert np.isfinite(hist.last("loss")) and not torch.equal(bf16[0].weight, ours[0].weight)
    fp16, batch_fn, loss_fn, _ = _setup()
    T.train(fp16, batch_fn, loss_fn, T.TrainConfig(steps=4, lr=1e-2, amp="fp16", grad_clip=1.0),
            checkpoint=tmp_path / "fp16.pt", progress=False)
    assert "scaler" in T.load_checkpoint(tmp_path / "fp16.pt")      # the loss scale resumes too
    with pytest.raises(ValueError, match="amp"):
        T.TrainConfig(steps=1, amp="fp8")


# --- 7. watching a long run

def test_tensorboard_log_and_projected_end(tmp_path, monkeypatch, capsys):
    assert T.projected_time(100, 50.0, 1000)[:2] == (2.0, 450.0)
    monkeypatch.setattr(T, "_PROJECT_AFTER", (3, 0.0))
    model, batch_fn, loss_fn, evaluate = _setup()
    cfg = T.TrainConfig(steps=20, lr=1e-2, log_every=5, eval_every=10)
    T.train(model, batch_fn, loss_fn, cfg, evaluate_fn=evaluate, tensorboard=tmp_path / "tb", progress=True)
    out = capsys.readouterr().out
    assert out.count("projected:") == 1 and "steps/s (ends ≈" in out and "UTC)" in out
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    assert {"loss", "val_l1", "lr"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("loss")] == [5, 10, 15, 20]


# --- 8. seed_everything turns deterministic algorithms off too

def test_seed_everything_deterministic_off_really_turns_it_off():
    try:
        T.seed_everything(0)
        assert torch.are_deterministic_algorithms_enabled()
        T.seed_everything(0, deterministic=False)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        T.seed_everything(0)


def test_file_system_without_locks_warns_and_trains(tmp_path, monkeypatch):
    def no_locks(*a):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(T.fcntl, "flock", no_locks)
    with pytest.warns(UserWarning, match=r"cannot lock .*ckpt\.pt\.lock"):
        _, hist = _run(tmp_path / "ckpt.pt", 10)
    assert hist.resumed_from == 0 and T.load_checkpoint(tmp_path / "ckpt.pt")["step"] == 10
