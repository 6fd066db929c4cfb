"""Checkpoints: exact round trips, and every kind of bad file refused with a CheckpointError that
names the file (never pickle, never a stray exception type)."""

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open

from helpers import host
from tiny_runs import tiny_config
from tinygrad_gpt import engine, fileio
from tinygrad_gpt.checkpoint import (
    CONFIG_FILE,
    MODEL_FILE,
    OPTIMIZER_FILE,
    load_model,
    load_optimizer,
    load_tokenizer,
    read_checkpoint,
    save_checkpoint,
)
from tinygrad_gpt.data import CharTokenizer
from tinygrad_gpt.engine import backend
from tinygrad_gpt.errors import CheckpointError
from tinygrad_gpt.model import GPT, GPTConfig
from tinygrad_gpt.optim import AdamW

VOCAB = "\n abcdefg"
WTE = "transformer.wte.weight"
CONFIG = tiny_config()
fuzz_settings = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def tiny_model(seed=0):
    return GPT(GPTConfig(len(VOCAB), CONFIG.block_size, CONFIG.n_layer, CONFIG.n_head, CONFIG.n_embd), seed=seed)


def trained(seed=0, steps=2):
    """A model and its AdamW after a few steps, so the moments are not zeros."""
    model = tiny_model(seed)
    optimizer = AdamW(model.named_parameters(), lr=1e-2, betas=(0.9, 0.99))
    idx = np.random.default_rng(seed).integers(0, len(VOCAB), (2, 8))
    for _ in range(steps):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, optimizer


def save(directory, model, optimizer, step=7):
    save_checkpoint(directory, model, CharTokenizer(VOCAB), CONFIG, step=step, best_val_loss=1.25, optimizer=optimizer)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A pristine checkpoint folder; tests that damage one work on a copy (see `ckpt`)."""
    directory = tmp_path_factory.mktemp("pristine")
    save(directory, *trained())
    return directory


@pytest.fixture
def ckpt(saved, tmp_path):
    return Path(shutil.copytree(saved, tmp_path / "ckpt"))


def load_all(directory):
    checkpoint = read_checkpoint(directory)
    model = load_model(checkpoint)
    load_optimizer(checkpoint, AdamW(model.named_parameters()))
    return model


def logits_of(model):
    idx = np.arange(12).reshape(2, 6) % len(VOCAB)
    return backend.to_numpy(model(idx)[0].data)


def test_round_trip_gives_identical_weights_logits_and_metadata(tmp_path):
    model, optimizer = trained()
    save(tmp_path, model, optimizer)
    checkpoint = read_checkpoint(tmp_path)
    loaded = load_model(checkpoint)
    assert (checkpoint.step, checkpoint.best_val_loss, checkpoint.vocab) == (7, 1.25, VOCAB)
    assert checkpoint.train_config == CONFIG and checkpoint.model_config == model.config
    for name, array in model.state_dict().items():
        assert np.array_equal(backend.to_numpy(loaded.state_dict()[name]), backend.to_numpy(array)), name
    assert np.array_equal(logits_of(loaded), logits_of(model))
    assert sorted(safetensors.numpy.load_file(tmp_path / MODEL_FILE)) == sorted(model.state_dict())


def test_optimizer_round_trip_continues_identically(tmp_path):
    model, optimizer = trained()
    save(tmp_path, model, optimizer)
    checkpoint = read_checkpoint(tmp_path)
    model2 = load_model(checkpoint)
    optimizer2 = AdamW(model2.named_parameters(), lr=1e-2, betas=(0.9, 0.99))
    load_optimizer(checkpoint, optimizer2)
    assert optimizer2.state_dict()["step"] == optimizer.state_dict()["step"] == 2
    idx = np.arange(16).reshape(2, 8) % len(VOCAB)
    for m, opt in ((model, optimizer), (model2, optimizer2)):  # one more identical step on each
        m(idx[:, :-1], idx[:, 1:])[1].backward()
        opt.step()
    assert np.array_equal(logits_of(model), logits_of(model2))


def test_config_json_also_describes_a_transformers_gpt2(saved):
    config = json.loads((saved / CONFIG_FILE).read_text())
    expected = {"model_type": "gpt2", "vocab_size": len(VOCAB), "n_positions": CONFIG.block_size, "n_layer": 2}
    assert {k: config[k] for k in expected} == expected and config["activation_function"] == "gelu_new"
    assert config["tie_word_embeddings"] and config["eos_token_id"] is None  # a char vocabulary has no end token
    with safe_open(saved / MODEL_FILE, framework="numpy") as f:
        assert f.metadata() == {"format": "pt"}  # what transformers' loader checks for
    assert json.loads((saved / "tokenizer.json").read_text())["model"]["vocab"] == {ch: i for i, ch in enumerate(VOCAB)}


def test_a_checkpoint_from_before_the_transformers_fields_still_loads(ckpt):
    """config.json as earlier versions wrote it: no GPT2Config fields, no layer_norm_epsilon, no
    gradient accumulation or init_from, no tokenizer.json."""
    expected = {k: v.copy() for k, v in load_all(ckpt).state_dict().items()}

    def as_before(config):
        for key in set(config) - {"step", "best_val_loss", "model", "vocab", "train", "optimizer_step", "sha256"}:
            del config[key]
        config["model"].pop("layer_norm_epsilon")
        config["train"].pop("gradient_accumulation_steps")
        config["train"].pop("init_from")
        config["sha256"].pop("tokenizer.json")

    rewrite_config(ckpt, as_before)
    (ckpt / "tokenizer.json").unlink()
    (ckpt / "tokenizer_config.json").unlink()
    assert_weights(load_all(ckpt), expected)
    checkpoint = read_checkpoint(ckpt)
    assert load_tokenizer(checkpoint).vocab == VOCAB and checkpoint.train_config == CONFIG


def test_best_checkpoint_has_no_optimizer(tmp_path):
    model, _ = trained()
    save_checkpoint(tmp_path, model, CharTokenizer(VOCAB), CONFIG, step=3, best_val_loss=None)
    checkpoint = read_checkpoint(tmp_path)
    assert checkpoint.optimizer_step is None and not (tmp_path / OPTIMIZER_FILE).exists()
    load_model(checkpoint)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_optimizer(checkpoint, AdamW(model.named_parameters()))


def test_checkpoint_moves_between_backends(backend, tmp_path):
    """Saved on the tested backend, loaded on numpy, saved again, loaded back: same weights."""
    model, optimizer = trained()
    expected = logits_of(model)
    save(tmp_path / "a", model, optimizer)
    engine.set_backend("numpy")
    on_cpu = load_all(tmp_path / "a")
    assert np.allclose(logits_of(on_cpu), expected, atol=1e-5)
    save(tmp_path / "b", on_cpu, None)
    engine.set_backend(backend)
    back = load_model(read_checkpoint(tmp_path / "b"))
    assert engine.backend.device_of(back.state_dict()[WTE]) == ("cuda" if backend == "cupy" else "cpu")
    assert np.allclose(logits_of(back), expected, atol=1e-5)


def rewrite_tensors(path, change):
    tensors = dict(safetensors.numpy.load_file(path))
    change(tensors)
    safetensors.numpy.save_file(tensors, path)


def rewrite_config(directory, change):
    config = json.loads((directory / CONFIG_FILE).read_text())
    change(config)
    (directory / CONFIG_FILE).write_text(json.dumps(config))


DAMAGE = {  # name: (file damaged, how, expected message)
    "truncated": (MODEL_FILE, lambda p: p.write_bytes(p.read_bytes()[:-100]), "not a valid safetensors"),
    "garbage": (MODEL_FILE, lambda p: p.write_bytes(b"\x00garbage" * 10), "not a valid safetensors"),
    "empty": (MODEL_FILE, lambda p: p.write_bytes(b""), "not a valid safetensors"),
    "deleted": (MODEL_FILE, lambda p: p.unlink(), "cannot read"),
    "missing tensor": (MODEL_FILE, lambda p: rewrite_tensors(p, lambda t: t.pop(WTE)), "missing keys"),
    "extra tensor": (MODEL_FILE, lambda p: rewrite_tensors(p, lambda t: t.update(lm_head=t[WTE])), "unexpected"),
    "wrong shape": (MODEL_FILE, lambda p: rewrite_tensors(p, lambda t: t.update({WTE: t[WTE][:-1]})), "shape"),
    "wrong dtype": (
        MODEL_FILE,
        lambda p: rewrite_tensors(p, lambda t: t.update({WTE: t[WTE].astype(np.float64)})),
        "dtype",
    ),
    "changed values": (MODEL_FILE, lambda p: rewrite_tensors(p, lambda t: t.update({WTE: t[WTE] + 1})), "sha256"),
    "optimizer truncated": (OPTIMIZER_FILE, lambda p: p.write_bytes(p.read_bytes()[:50]), "not a valid safetensors"),
    "optimizer missing moment": (
        OPTIMIZER_FILE,
        lambda p: rewrite_tensors(p, lambda t: t.pop(f"exp_avg.{WTE}")),
        "missing keys",
    ),
    "config not json": (CONFIG_FILE, lambda p: p.write_text("{'step': 1"), "not valid JSON"),
    "config not utf-8": (CONFIG_FILE, lambda p: p.write_bytes(b"\xff\xfe\xfa"), "not valid JSON"),
    "config a list": (CONFIG_FILE, lambda p: p.write_text("[1, 2]"), "JSON object"),
    "config deleted": (CONFIG_FILE, lambda p: p.unlink(), "cannot read"),
    "config bad model": (
        CONFIG_FILE,
        lambda p: rewrite_config(p.parent, lambda c: c["model"].update(n_head=5)),
        "n_head",
    ),
    "config vocab too short": (
        CONFIG_FILE,
        lambda p: rewrite_config(p.parent, lambda c: c.update(vocab="ab")),
        "vocab",
    ),
    "config step text": (CONFIG_FILE, lambda p: rewrite_config(p.parent, lambda c: c.update(step="7")), "'step'"),
    "config unknown train field": (
        CONFIG_FILE,
        lambda p: rewrite_config(p.parent, lambda c: c["train"].update(x=1)),
        "'x'",
    ),
    "config lost sha256": (CONFIG_FILE, lambda p: rewrite_config(p.parent, lambda c: c.pop("sha256")), "sha256"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_damaged_checkpoint_is_refused_naming_the_file(ckpt, case):
    name, damage, message = DAMAGE[case]
    damage(ckpt / name)
    with pytest.raises(CheckpointError, match=message) as info:
        load_all(ckpt)
    assert str(ckpt / name) in str(info.value) and "\n" not in str(info.value)


def save_killed_after_first_rename(ckpt, monkeypatch, seed, step):
    """A save that a crash stops after it renamed the new weights in, before config.json."""
    real_replace, renames = fileio.os.replace, []

    def crash_after_first_rename(src, dst):
        if Path(dst).parent == ckpt:  # the save's own renames (not the links into .previous/)
            if renames:
                raise KeyboardInterrupt  # stands for SIGKILL: nothing after this point runs
            renames.append(dst)
        real_replace(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(fileio.os, "replace", crash_after_first_rename)
        with pytest.raises(KeyboardInterrupt):
            save(ckpt, *trained(seed=seed), step=step)
    assert renames == [ckpt / MODEL_FILE]  # new weights beside the old config.json


def assert_weights(model, expected):
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(host(value), host(expected[name]))


def test_a_save_killed_between_renames_still_loads_the_previous_checkpoint(ckpt, monkeypatch):
    """The old config.json finds its own weights in .previous/."""
    expected = {k: v.copy() for k, v in load_all(ckpt).state_dict().items()}
    save_killed_after_first_rename(ckpt, monkeypatch, seed=1, step=8)
    assert_weights(load_all(ckpt), expected)


def test_two_saves_killed_between_renames_in_a_row_still_load(ckpt, monkeypatch):
    """The second save must not push the orphaned weights of the first into .previous/."""
    expected = {k: v.copy() for k, v in load_all(ckpt).state_dict().items()}
    save_killed_after_first_rename(ckpt, monkeypatch, seed=1, step=8)
    save_killed_after_first_rename(ckpt, monkeypatch, seed=2, step=9)
    assert_weights(load_all(ckpt), expected)
    save(ckpt, *trained(seed=3), step=10)  # and a save that completes is loaded whole
    assert read_checkpoint(ckpt).step == 10
    assert_weights(load_all(ckpt), {k: v for k, v in trained(seed=3)[0].state_dict().items()})


def test_files_from_different_saves_are_refused(ckpt, tmp_path):
    """New weights beside an older config.json, with no matching file in .previous/ either."""
    old_config = (ckpt / CONFIG_FILE).read_bytes()
    save(ckpt, *trained(seed=1), step=8)
    save(ckpt, *trained(seed=2), step=9)
    (ckpt / CONFIG_FILE).write_bytes(old_config)
    with pytest.raises(CheckpointError, match=f"{MODEL_FILE}: does not match the sha256"):
        load_all(ckpt)


def test_a_failed_save_leaves_the_previous_checkpoint(ckpt, monkeypatch):
    before = {p.name: p.read_bytes() for p in ckpt.iterdir() if p.is_file()}

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "replace", fail)
    with pytest.raises(OSError):
        save(ckpt, *trained(seed=1), step=8)
    assert {p.name: p.read_bytes() for p in ckpt.iterdir() if p.is_file()} == before  # no temp files either
    load_all(ckpt)


class WritesMarker:
    """Unpickling this would create a file: proof that a loader ran pickle."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return Path.touch, (self.path,)


def test_pickle_payload_is_never_executed(ckpt, tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({WTE: WritesMarker(marker)})
    assert pickle.loads(payload) and marker.exists()  # the payload works when unpickled...
    marker.unlink()
    (ckpt / MODEL_FILE).write_bytes(payload)
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_all(ckpt)
    assert not marker.exists()  # ...and loading the checkpoint did not unpickle it


@fuzz_settings
@given(content=st.binary(max_size=300) | st.binary(min_size=8, max_size=8).map(lambda b: b + b"{}" * 20))
def test_random_bytes_as_model_file(ckpt, content):
    (ckpt / MODEL_FILE).write_bytes(content)
    with pytest.raises(CheckpointError, match=MODEL_FILE):
        load_all(ckpt)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 40) | st.floats(allow_nan=True) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@fuzz_settings
@given(config=st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_random_json_as_config(ckpt, config):
    (ckpt / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=CONFIG_FILE):
        load_all(ckpt)


@fuzz_settings
@given(data=st.data())
def test_one_random_value_in_a_valid_config(saved, tmp_path_factory, data):
    """A valid config.json with one field (top level or nested) replaced by any JSON value: it
    loads (the value happened to fit) or fails with a CheckpointError, nothing else."""
    config = json.loads((saved / CONFIG_FILE).read_text())
    section = data.draw(st.sampled_from([config, config["model"], config["train"], config["sha256"]]))
    section[data.draw(st.sampled_from(sorted(section)))] = data.draw(json_values)
    directory = Path(shutil.copytree(saved, tmp_path_factory.mktemp("fuzz"), dirs_exist_ok=True))
    (directory / CONFIG_FILE).write_text(json.dumps(config))
    try:
        load_all(directory)
    except CheckpointError as e:
        assert CONFIG_FILE in str(e) or MODEL_FILE in str(e) or OPTIMIZER_FILE in str(e)
