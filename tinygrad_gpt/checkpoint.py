"""Checkpoints: safetensors for arrays, JSON for everything else; never pickle.

A checkpoint folder (the out-dir, or out-dir/best) holds
  model.safetensors      the weights under Hugging Face GPT-2 names, float32, host arrays
  optimizer.safetensors  AdamW's moments, "exp_avg.<name>" / "exp_avg_sq.<name>" (latest only)
  tokenizer.json         the tokenizer in Hugging Face's format (a BPE's only copy; for the
                         character tokenizer, its vocabulary is config.json's "vocab")
  config.json            model config, vocabulary, training config, step, best val loss,
                         optimizer step, and the sha256 of each file above; beside them
                         GPT2Config's fields, so that the folder is also a transformers model
                         (with tokenizer_config.json, derived from the rest)

Crash safety: a save writes all files to temp files and fsyncs them, then renames them over
the old ones back to back, config.json last. config.json is the commit point: it names the exact
bytes (by sha256) of the files it belongs to. Before the renames, the files being replaced are
hard-linked into .previous/, so a crash between two renames (old config.json, new weights) still
loads: the loader takes the file whose sha256 config.json names, from the folder or from
.previous/. A crash before the renames leaves the previous checkpoint untouched. A set that
matches neither (a file replaced by hand) is refused with a CheckpointError, never silently mixed.
"""

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import safetensors.numpy

from tinygrad_gpt.config import MODEL_FIELDS, TrainConfig
from tinygrad_gpt.data import CharTokenizer
from tinygrad_gpt.engine import backend
from tinygrad_gpt.errors import CheckpointError, TinyGPTError, one_line
from tinygrad_gpt.fileio import atomic_write, check_regular_file, remove_stale_temp_files
from tinygrad_gpt.hf.bpe import TOKENIZER_FILE, BPETokenizer
from tinygrad_gpt.hf.gpt2 import (
    CONFIG_FILE,
    MODEL_FILE,
    TOKENIZER_CONFIG_FILE,
    check_weights_fit,
    tokenizer_config,
    transformers_config,
)
from tinygrad_gpt.model import GPT, GPTConfig

OPTIMIZER_FILE = "optimizer.safetensors"
BEST_DIR = "best"
CONFIG_DIGEST = "config_sha256"  # config.json's own digest, in config.json (see config_digest)
PREVIOUS_DIR = ".previous"  # the tensor files an older config.json may still name mid-save


@dataclass
class Checkpoint:
    """What config.json says (the tensors stay in their files until load_model/load_optimizer)."""

    directory: Path
    model_config: GPTConfig
    vocab: str | None  # the characters of a char model; None: tokenizer.json holds a BPE
    train_config: TrainConfig
    step: int  # training iterations completed
    best_val_loss: float | None
    optimizer_step: int | None  # None where no optimizer state was saved (best/)
    sha256: dict  # file name -> hex digest of its bytes


def save_checkpoint(directory, model, tokenizer, train_config, step, best_val_loss, optimizer=None):
    """Write the model (and optimizer) tensors, the tokenizer (a CharTokenizer or BPETokenizer)
    and config.json into directory, crash-safely. A model that transformers cannot express
    (bias=False) is saved all the same, without GPT2Config's fields: a folder for us only."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # the "format" tag is what transformers' loader looks for in a safetensors file
    blobs = {
        MODEL_FILE: _serialize(model.state_dict(), metadata={"format": "pt"}),
        TOKENIZER_FILE: tokenizer.to_json().encode(),
    }
    optimizer_step = None
    if optimizer is not None:
        state = optimizer.state_dict()
        blobs[OPTIMIZER_FILE] = _serialize(state["tensors"])
        optimizer_step = state["step"]
    transformers = transformers_config(model.config, tokenizer)
    config = {
        **(transformers or {}),
        "step": step,
        "best_val_loss": best_val_loss,
        "model": asdict(model.config),
        "vocab": tokenizer.vocab if isinstance(tokenizer, CharTokenizer) else None,
        "train": {k: v for k, v in asdict(train_config).items() if k not in MODEL_FIELDS},
        "optimizer_step": optimizer_step,
        "sha256": {name: hashlib.sha256(blob).hexdigest() for name, blob in blobs.items()},
    }
    config[CONFIG_DIGEST] = config_digest(config)
    files = {directory / name: blob for name, blob in blobs.items()}
    if transformers:
        files[directory / TOKENIZER_CONFIG_FILE] = json.dumps(tokenizer_config(model.config, tokenizer)).encode()
    files[directory / CONFIG_FILE] = json.dumps(config, indent=2).encode()  # last: the commit point
    for path in files:  # what saves killed mid-write left (no `finally` runs on SIGKILL)
        remove_stale_temp_files(path)
    _keep_previous(directory, blobs)
    atomic_write(files)


def check_no_links_out(directory, names):
    """CheckpointError unless each of `names` inside directory is a real file or folder (or
    absent): a symlink there would have saves write, or hard-link, outside the out-dir."""
    for name in names:
        path = Path(directory) / name
        if path.is_symlink():
            raise CheckpointError(
                f"{path}: a symbolic link (to {os.readlink(path)}); a run writes inside its --out-dir only: "
                "remove the link"
            )


def _keep_previous(directory, names):
    """Link the files about to be replaced into directory/.previous/ (each swapped in
    atomically), so the current config.json's files survive until the new one is renamed in.
    Only a file that config.json names (by sha256) is kept: after a save killed between renames,
    the folder holds a file no config.json names, and .previous/ already has the right one."""
    try:
        committed = json.loads((directory / CONFIG_FILE).read_bytes())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):  # no checkpoint yet (or one that won't load)
        return
    previous = directory / PREVIOUS_DIR
    check_no_links_out(directory, [PREVIOUS_DIR])
    for name in names:
        current, tmp = directory / name, previous / f".{name}.tmp"
        if not current.exists() or hashlib.sha256(current.read_bytes()).hexdigest() != committed.get(name):
            continue
        previous.mkdir(exist_ok=True)
        tmp.unlink(missing_ok=True)
        try:
            os.link(current, tmp)
        except OSError:  # a filesystem without hard links
            shutil.copyfile(current, tmp)
        os.replace(tmp, previous / name)


def _serialize(arrays, metadata=None):
    return safetensors.numpy.save({name: backend.to_numpy(a) for name, a in arrays.items()}, metadata=metadata)


def config_digest(config):
    """The sha256 of config.json's content, the digest itself left out: keys sorted and JSON
    written compactly, so that the digest survives re-indenting the file but not a changed value."""
    content = {k: v for k, v in config.items() if k != CONFIG_DIGEST}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_checkpoint(directory):
    """Parse and validate directory/config.json; CheckpointError naming the file if it is bad."""
    path = Path(directory) / CONFIG_FILE
    check_regular_file(path, CheckpointError)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the checkpoint config ({e.strerror or e})") from None
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    try:
        return _parse_config(Path(directory), config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from None


def _parse_config(directory, config):
    if not isinstance(config, dict):
        raise ValueError(f"expected a JSON object, got {type(config).__name__}")
    model = _field(config, "model", dict)
    for name in MODEL_FIELDS:
        if name not in model:
            raise ValueError(f"'model' lacks '{name}'")
    model_config = GPTConfig(**model)
    vocab = _field(config, "vocab", str, optional=True)
    if vocab is not None and (len(vocab) != model_config.vocab_size or len(set(vocab)) != len(vocab)):
        raise ValueError(f"'vocab' must be {model_config.vocab_size} distinct characters")
    train_config = TrainConfig(**_field(config, "train", dict), **{k: model[k] for k in MODEL_FIELDS})
    step = _field(config, "step", int)
    best_val_loss = _field(config, "best_val_loss", (int, float), optional=True)
    optimizer_step = _field(config, "optimizer_step", int, optional=True)
    sha256 = _field(config, "sha256", dict)
    if step < 0 or (optimizer_step is not None and optimizer_step < 0):
        raise ValueError("'step' and 'optimizer_step' must be >= 0")
    if MODEL_FILE not in sha256 or not all(isinstance(v, str) for v in sha256.values()):
        raise ValueError(f"'sha256' must map '{MODEL_FILE}' (and '{OPTIMIZER_FILE}') to hex digests")
    if vocab is None and TOKENIZER_FILE not in sha256:
        raise ValueError(f"without a 'vocab', '{TOKENIZER_FILE}' must be recorded in 'sha256'")
    # last, so that a value no save writes gets its own message above (older saves have no digest)
    if CONFIG_DIGEST in config and config[CONFIG_DIGEST] != config_digest(config):
        raise ValueError(f"its content does not match its '{CONFIG_DIGEST}': the file was edited after the save")
    return Checkpoint(
        directory,
        model_config,
        vocab,
        train_config,
        step,
        None if best_val_loss is None else float(best_val_loss),
        optimizer_step,
        sha256,
    )


def _field(config, key, kinds, optional=False):
    """config[key], checked to be of type kinds (bool never passes for a number)."""
    value = config.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kinds) or isinstance(value, bool):
        expected = kinds.__name__ if isinstance(kinds, type) else "a number"
        raise ValueError(f"'{key}' must be {expected}{' or null' if optional else ''}, got {value!r:.60}")
    return value


def load_model(checkpoint):
    """A GPT built from the checkpoint's config with its saved weights, on the active backend."""
    config_path = checkpoint.directory / CONFIG_FILE
    check_weights_fit(checkpoint.model_config, [checkpoint.directory / MODEL_FILE], config_path)  # before building
    try:
        model = GPT(checkpoint.model_config)
    except (ValueError, MemoryError) as e:  # sizes from config.json that cannot be built
        raise CheckpointError(f"{checkpoint.directory / CONFIG_FILE}: cannot build this model ({e})") from None
    _load_tensors(checkpoint, MODEL_FILE, model.state_dict(), model.load_state_dict)
    return model


def load_optimizer(checkpoint, optimizer):
    """Restore AdamW's moments and step count saved with the checkpoint."""
    if checkpoint.optimizer_step is None or OPTIMIZER_FILE not in checkpoint.sha256:
        raise CheckpointError(f"{checkpoint.directory / CONFIG_FILE}: this checkpoint has no optimizer state")
    step = checkpoint.optimizer_step
    _load_tensors(
        checkpoint,
        OPTIMIZER_FILE,
        optimizer.state_dict()["tensors"],
        lambda tensors: optimizer.load_state_dict({"step": step, "tensors": tensors}),
    )


def load_tokenizer(checkpoint):
    """The checkpoint's tokenizer: its character vocabulary, or the BPE in its tokenizer.json."""
    if checkpoint.vocab is not None:
        return CharTokenizer(checkpoint.vocab)
    path, raw = _read_file(checkpoint, TOKENIZER_FILE)
    _check_sha256(checkpoint, TOKENIZER_FILE, path, raw)
    try:
        tokenizer = BPETokenizer.from_json(raw.decode("utf-8", errors="replace"))
    except TinyGPTError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if tokenizer.vocab_size > checkpoint.model_config.vocab_size:
        raise CheckpointError(
            f"{path}: ids up to {tokenizer.vocab_size - 1}, past the model's {checkpoint.model_config.vocab_size}"
        )
    return tokenizer


def _read_file(checkpoint, name):
    """(path, bytes) of the file `name` that config.json recorded: in the folder, or in .previous/
    after a save stopped between renames; the folder's own file where neither matches."""
    path = checkpoint.directory / name
    check_regular_file(path, CheckpointError)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    if hashlib.sha256(raw).hexdigest() != checkpoint.sha256[name]:
        previous = checkpoint.directory / PREVIOUS_DIR / name
        check_regular_file(previous, CheckpointError)
        if previous.exists() and hashlib.sha256(previous.read_bytes()).hexdigest() == checkpoint.sha256[name]:
            return previous, previous.read_bytes()
    return path, raw


def _check_sha256(checkpoint, name, path, raw):
    if hashlib.sha256(raw).hexdigest() != checkpoint.sha256[name]:
        raise CheckpointError(
            f"{path}: does not match the sha256 recorded in {CONFIG_FILE}: the files "
            f"come from different saves (an interrupted save, or a replaced file)"
        )


def _load_tensors(checkpoint, name, expected, load):
    """Read checkpoint.directory/name, check its dtypes against the `expected` arrays, hand it to
    `load` (which checks names and shapes before copying), then check config.json's sha256."""
    path, raw = _read_file(checkpoint, name)
    try:
        tensors = safetensors.numpy.load(raw)
    except Exception as e:  # the parser reports bad input as SafetensorError, or KeyError for unknown dtypes
        raise CheckpointError(f"{path}: not a valid safetensors file ({one_line(e)})") from None
    wrong_dtype = [
        f"{k} {tensors[k].dtype} != {expected[k].dtype}"
        for k in expected
        if k in tensors and tensors[k].dtype != expected[k].dtype
    ]
    if wrong_dtype:
        raise CheckpointError(f"{path}: wrong dtypes (file != expected): {', '.join(wrong_dtype)}")
    # a NaN weight would make every logit NaN, and sampling would then pick token 0 for ever
    if not_finite := [k for k in expected if k in tensors and not np.isfinite(tensors[k]).all()]:
        raise CheckpointError(f"{path}: NaN or infinite values in {', '.join(not_finite[:5])}")
    try:
        load(tensors)  # checks every name and shape before copying anything
    except ValueError as e:
        raise CheckpointError(f"{path}: {one_line(e)}") from None
    # Checked last so that a file with wrong names or shapes gets the more precise message above;
    # on a mismatch, the error makes the caller abandon the model or optimizer just filled.
    _check_sha256(checkpoint, name, path, raw)
