"""reprolib.train: determinism, the step schedule, and resume after a kill."""
import multiprocessing as mp

import numpy as np
import pytest
import torch

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


def _run(ckpt, steps, stop_after=None):
    model, batch_fn, loss_fn, evaluate = _setup()
    cfg = T.TrainConfig(steps=steps, lr=1e-2, milestones=(30,), log_every=5, checkpoint_every=10,
                        eval_every=20)
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


def test_changed_config_does_not_resume(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    _run(ckpt, 20)
    model, batch_fn, loss_fn, _ = _setup()
    hist = T.train(model, batch_fn, loss_fn, T.TrainConfig(steps=10, lr=5e-3), checkpoint=ckpt, progress=False)
    assert hist.resumed_from == 0


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


def test_torn_checkpoint_is_ignored(tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"partial write")
    assert T.load_checkpoint(ckpt) is None


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
