"""Hugging Face GPT-2 folders, both ways: `GPT.from_pretrained` reads theirs (config.json,
model.safetensors or its shards), and the fields below make every checkpoint folder of ours one
that transformers reads (`GPT2LMHeadModel.from_pretrained(out)`, `AutoTokenizer.from_pretrained(out)`).

The weights need no conversion: our names and layouts are GPT-2's (its Conv1D stores (in, out)).
Folders differ only in what they hold besides: names without the `transformer.` prefix (GPT2Model,
and OpenAI's own upload), an `lm_head.weight` that repeats wte's matrix (the head is tied), and the
causal-mask buffers `attn.bias` / `attn.masked_bias` that older transformers saved.
"""

import json
import math
import os
import re
import stat
from pathlib import Path

import numpy as np
from safetensors import safe_open

from tinygrad_gpt.config import GPTConfig
from tinygrad_gpt.errors import CheckpointError, TinyGPTError, one_line
from tinygrad_gpt.fileio import read_small
from tinygrad_gpt.hf.bpe import MERGES_FILE, TOKENIZER_FILE, VOCAB_FILE, BPETokenizer

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
MODEL_INDEX_FILE = "model.safetensors.index.json"  # a sharded model: tensor name -> shard file
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
# GPT2Config's options and the values our GPT implements, GPT-2's default first ("gelu_pytorch_tanh"
# is another name of GPT-2's tanh GELU, which F.gelu is)
SUPPORTED = {
    "activation_function": ("gelu_new", "gelu_pytorch_tanh"),
    "scale_attn_weights": (True,),
    "scale_attn_by_inverse_layer_idx": (False,),
    "add_cross_attention": (False,),
    "tie_word_embeddings": (True,),
}
READABLE_DTYPES = ("F16", "F32", "F64")  # what NumPy holds (not bfloat16)
NOT_WEIGHTS = re.compile(r"(^|\.)(lm_head\.weight|h\.\d+\.attn\.(bias|masked_bias))$")  # tied head, mask buffers
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit on a header
HUB_NAMES = {name: f"openai-community/{name}" for name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")}
HUB_FILES = [CONFIG_FILE, MODEL_FILE, "model-*.safetensors", MODEL_INDEX_FILE, TOKENIZER_FILE, VOCAB_FILE, MERGES_FILE]


def read_config(folder, dropout=0.0):
    """The GPTConfig of folder/config.json, refusing what our GPT does not implement."""
    path = Path(folder) / CONFIG_FILE
    try:
        config = json.loads(read_small(path, CheckpointError))
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e}); is {folder} a Hugging Face folder?") from None
    except ValueError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("model_type") != "gpt2":
        found = config.get("model_type") if isinstance(config, dict) else None
        raise CheckpointError(f"{path}: model_type is {found!r}, not 'gpt2'; only GPT-2 models can be loaded")
    n_embd = config.get("n_embd")
    for key, values in SUPPORTED.items():
        if config.get(key, values[0]) not in values:
            supported = " or ".join(map(repr, values))
            raise CheckpointError(f"{path}: {key} is {config[key]!r}; this GPT implements {supported} only")
    if config.get("n_inner") not in (None, 4 * n_embd if isinstance(n_embd, int) else None):
        raise CheckpointError(f"{path}: n_inner is {config['n_inner']!r}; this GPT's MLP is 4 * n_embd wide")
    try:
        return GPTConfig(
            vocab_size=config.get("vocab_size"),
            block_size=config.get("n_positions"),
            n_layer=config.get("n_layer"),
            n_head=config.get("n_head"),
            n_embd=n_embd,
            dropout=dropout,
            layer_norm_epsilon=config.get("layer_norm_epsilon", 1e-5),
        )
    except ValueError as e:  # GPTConfig names the field (n_positions is our block_size)
        raise CheckpointError(f"{path}: {e}") from None


def pretrained_tokenizer(folder):
    """The BPE tokenizer of a GPT-2 folder, checked to fit its model's vocabulary."""
    tokenizer = BPETokenizer.from_folder(folder)
    vocab_size = read_config(folder).vocab_size
    if tokenizer.vocab_size > vocab_size:
        raise CheckpointError(
            f"{folder}: its tokenizer has ids up to {tokenizer.vocab_size - 1}, past its model's {vocab_size} tokens"
        )
    return tokenizer


def read_weights(folder):
    """{our parameter name: host array} from folder's safetensors file(s), leaving out the tied
    head and the mask buffers; a pickled pytorch_model.bin is never read."""
    tensors, sources = {}, {}
    for path in weight_files(folder):
        _read_safetensors(path, tensors, sources)
    return tensors


def weight_files(folder):
    """The safetensors file(s) of folder's weights: the shards its index names, or model.safetensors."""
    folder = Path(folder)
    if (folder / MODEL_INDEX_FILE).is_file():
        try:
            weight_map = json.loads(read_small(folder / MODEL_INDEX_FILE, CheckpointError))["weight_map"]
            files = sorted(set(weight_map.values()))
            outside = [name for name in files if Path(name).is_absolute() or ".." in Path(name).parts]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{folder / MODEL_INDEX_FILE}: not a valid shard index ({e})") from None
        if outside:  # a shard index names files of its own folder, never one elsewhere
            raise CheckpointError(f"{folder / MODEL_INDEX_FILE}: names a file outside {folder}: {outside[0]}")
    elif (folder / MODEL_FILE).exists():  # a device or FIFO there is refused by name when it is read
        files = [MODEL_FILE]
    else:
        others = sorted(p.name for p in folder.glob("*.bin"))
        hint = f" ({', '.join(others)} is pickled PyTorch, which is never loaded here)" if others else ""
        raise CheckpointError(f"{folder}: no {MODEL_FILE} or {MODEL_INDEX_FILE}{hint}")
    return [folder / name for name in files]


def safetensors_shapes(path):
    """{tensor name: shape} from a safetensors file's header alone, its data unread; CheckpointError
    unless the file is exactly as long as the header says (truncated, padded, or not one)."""
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as f:  # a FIFO: no wait
            status = os.fstat(f.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise CheckpointError(f"{path}: not a regular file")
            size = status.st_size
            length = int.from_bytes(f.read(8), "little")
            if size < 8 or length > min(MAX_HEADER_BYTES, size - 8):
                raise ValueError(f"a header of {length} bytes in a file of {size}")
            header = json.loads(f.read(length))
            entries = {name: entry for name, entry in header.items() if name != "__metadata__"}
            shapes = {name: tuple(int(n) for n in entry["shape"]) for name, entry in entries.items()}
            end = 8 + length + max((int(entry["data_offsets"][1]) for entry in entries.values()), default=0)
    except CheckpointError:
        raise
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:  # a malformed header
        raise CheckpointError(f"{path}: not a valid safetensors file ({one_line(e)})") from None
    if end != size:
        raise CheckpointError(f"{path}: not a valid safetensors file ({size} bytes, its header describes {end})")
    return shapes


def check_weights_fit(config, paths, config_path):
    """CheckpointError unless the weights files could hold the model config describes, judged from
    their headers before any array is made: a config.json asking for ten million layers would
    otherwise have the model built (and the memory taken) first. A model up to twice its weights
    passes here, so that a nearly right file gets load_state_dict's message naming each tensor."""
    stored = sum(
        math.prod(shape)
        for path in paths
        for name, shape in safetensors_shapes(path).items()
        if not NOT_WEIGHTS.search(name)
    )
    wanted = config.parameter_count()
    if wanted > 2 * stored:
        raise CheckpointError(
            f"{config_path}: describes a model of {wanted:,} parameters, but its weights hold {stored:,} numbers"
        )


def _read_safetensors(path, tensors, sources):
    """Add path's weights to tensors under our names; sources keeps the name each came from, so
    that two names for one weight (with and without `transformer.`) are refused, not overwritten."""
    try:
        with safe_open(path, framework="numpy") as f:
            for key in f.keys():
                if NOT_WEIGHTS.search(key):
                    continue
                dtype = f.get_slice(key).get_dtype()
                if dtype not in READABLE_DTYPES:
                    raise CheckpointError(
                        f"{path}: {key} is stored as {dtype}, which NumPy cannot hold; save the model in "
                        f"float32 or float16 (model.float().save_pretrained(...))"
                    )
                name = "transformer." + key.removeprefix("transformer.")
                if name in sources:
                    raise CheckpointError(f"{path}: {key} and {sources[name]} are the same weight {name}")
                tensor = f.get_tensor(key)
                if not np.isfinite(tensor).all():
                    raise CheckpointError(f"{path}: {key} holds NaN or infinite values")
                tensors[name], sources[name] = tensor, key
    except CheckpointError:
        raise
    except Exception as e:  # the parser reports bad files as SafetensorError, missing ones as OSError
        raise CheckpointError(f"{path}: not a valid safetensors file ({one_line(e)})") from None


def transformers_config(config, tokenizer):
    """GPT2Config's fields for a checkpoint's config.json, beside ours, or None where transformers
    cannot express the model (its GPT-2 always has biases)."""
    if not config.bias:
        return None
    eos = tokenizer.token_to_id(tokenizer.eos_token) if tokenizer.eos_token else None
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": None,  # 4 * n_embd
        "activation_function": "gelu_new",
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": config.layer_norm_epsilon,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": eos,  # GPT-2's <|endoftext|> both begins and ends; a char vocabulary has none
        "eos_token_id": eos,
    }


def tokenizer_config(config, tokenizer):
    """tokenizer_config.json: which class reads tokenizer.json (the generic one: GPT2Tokenizer would
    impose byte-level pre-tokenization on a char vocabulary), and no clean-up of spaces on decode."""
    special = dict.fromkeys(("bos_token", "eos_token", "unk_token"), tokenizer.eos_token) if tokenizer.eos_token else {}
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,
        "model_max_length": config.block_size,
        **special,
    }


def resolve(name):
    """The folder a name stands for (--init-from's value): a local folder, or a Hub model (gpt2,
    gpt2-medium, ..., owner/name) fetched by huggingface_hub where it is installed and the Hub is
    reachable."""
    if Path(name).is_dir():
        return Path(name)
    repo = HUB_NAMES.get(str(name), str(name))
    files = f"{CONFIG_FILE} {MODEL_FILE} {TOKENIZER_FILE}"
    how = f"download it where the Hub is reachable (hf download {repo} {files} --local-dir DIR) and pass DIR"
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*", repo):
        raise TinyGPTError(f"{name}: no such folder, nor a Hugging Face Hub model name")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise TinyGPTError(
            f"{name}: no such folder here, and huggingface_hub is not installed to fetch {repo}; {how}"
        ) from None
    try:
        return Path(snapshot_download(repo, allow_patterns=HUB_FILES))
    except Exception as e:  # offline, unknown repo, gated, ...: huggingface_hub has many error types
        raise TinyGPTError(
            f"{name}: no such folder, and {repo} could not be fetched from the Hugging Face Hub "
            f"({type(e).__name__}); {how}"
        ) from None
