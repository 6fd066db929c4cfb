"""GPT-2's byte-level BPE through `tokenizers`, the char tokenizer's tokenizer.json, and streamed
output that equals decoding the whole sequence at once."""

import io
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_folders import ACCENTED, END_OF_TEXT, bpe_corpus, gpt2_folder, tokenizers, train_bpe
from tiny_runs import tiny_config
from tinygrad_gpt import GPT, GPTConfig
from tinygrad_gpt.checkpoint import load_tokenizer, read_checkpoint, save_checkpoint
from tinygrad_gpt.data import CharTokenizer
from tinygrad_gpt.errors import CheckpointError, TinyGPTError, UsageError
from tinygrad_gpt.hf.bpe import BPETokenizer
from tinygrad_gpt.sample import TextStream, sample

hypothesis_settings = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A byte-level BPE learned on the test corpus, saved both ways: tokenizer.json, and
    vocab.json + merges.txt (GPT-2's original pair) in another folder."""
    text = bpe_corpus(tmp_path_factory.mktemp("data") / "play.txt").read_text(encoding="utf-8")
    tokenizer = train_bpe(text)
    json_dir, pair_dir = tmp_path_factory.mktemp("json"), tmp_path_factory.mktemp("pair")
    tokenizer.save(str(json_dir / "tokenizer.json"))
    tokenizer.save_model(str(pair_dir))
    return tokenizer, json_dir, pair_dir


@pytest.fixture(scope="module")
def bpe(trained):
    return BPETokenizer.from_folder(trained[1])


def test_tokenizer_json_and_vocab_merges_tokenize_alike(trained, bpe):
    tokenizer, _, pair_dir = trained
    from_pair = BPETokenizer.from_folder(pair_dir)
    text = f"ROMEO:\nthou art {ACCENTED}{END_OF_TEXT}JULIET: ok"
    assert bpe.encode(text).tolist() == from_pair.encode(text).tolist() == tokenizer.encode(text).ids
    assert bpe.encode(END_OF_TEXT).tolist() == [tokenizer.token_to_id(END_OF_TEXT)]  # one special token
    assert bpe.eos_token == from_pair.eos_token == END_OF_TEXT
    assert bpe.vocab_size == from_pair.vocab_size == tokenizer.get_vocab_size()


@hypothesis_settings
@given(text=st.text(max_size=60))
def test_byte_level_bpe_round_trips_any_text(bpe, text):
    ids = bpe.encode(text)
    assert ids.dtype == np.int64 and bpe.decode(ids) == text and bpe.unknown_chars(text) == []


@hypothesis_settings
@given(data=st.data())
def test_streamed_pieces_join_to_the_whole_decoding(bpe, data):
    """Ids of any text with some dropped (leaving characters cut short) and random ones mixed in,
    pushed in any chunks: the pieces, then finish(), equal decode(all ids)."""
    ids = bpe.encode(data.draw(st.text(alphabet=st.characters(codec="utf-8"), max_size=30))).tolist()
    ids = [i for i in ids if data.draw(st.integers(0, 9))]  # drops about one in ten
    ids += data.draw(st.lists(st.integers(0, bpe.vocab_size - 1), max_size=10))
    ids = data.draw(st.permutations(ids)) if data.draw(st.booleans()) else ids
    cuts = sorted(data.draw(st.lists(st.integers(0, len(ids)), max_size=8)))
    stream, pieces = TextStream(bpe), []
    for a, b in zip([0, *cuts], [*cuts, len(ids)]):
        pieces.append(stream.push(ids[a:b]))
    pieces.append(stream.finish())
    assert "".join(pieces) == bpe.decode(ids)


def test_a_token_by_token_decoding_would_differ(bpe):
    """The case TextStream exists for: a character split over two tokens."""
    ids = bpe.encode("🎭").tolist()
    assert len(ids) > 1 and "".join(bpe.decode([i]) for i in ids) != "🎭"
    stream = TextStream(bpe)
    assert [stream.push([i]) for i in ids] == [""] * (len(ids) - 1) + ["🎭"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory, trained):
    return gpt2_folder(tmp_path_factory.mktemp("gpt2"), trained[0])


def test_sample_prints_what_decoding_the_whole_sequence_gives(folder):
    """A random GPT-2 over a byte-level vocabulary emits many tokens that are parts of characters."""
    prompt, n = "señor ☃", 200
    out = io.StringIO()
    sample(prompt=prompt, max_new_tokens=n, temperature=1.0, top_k=None, seed=3, init_from=folder, file=out)
    tokenizer = BPETokenizer.from_folder(folder)
    ids = GPT.from_pretrained(folder).generate(tokenizer.encode(prompt)[None], n, temperature=1.0, seed=3)[0]
    assert out.getvalue() == tokenizer.decode(ids) + "\n"
    new = ids[len(tokenizer.encode(prompt)) :]
    assert "".join(tokenizer.decode([i]) for i in new) != tokenizer.decode(new)  # the hold-back was needed


def test_sample_refuses_a_prompt_its_tokenizer_cannot_encode(tmp_path):
    """A tokenizer.json over a few characters (ours) loaded as a Hugging Face tokenizer."""
    (tmp_path / "tokenizer.json").write_text(CharTokenizer("abc \n").to_json())
    tokenizer = BPETokenizer.from_folder(tmp_path)
    assert tokenizer.unknown_chars("a cab!Z") == ["!", "Z"] and tokenizer.eos_token is None


@hypothesis_settings
@given(text=st.text(alphabet="\n !,.:ABRTadehilnorstu", max_size=40))
def test_the_char_tokenizer_json_tokenizes_as_the_char_tokenizer(tmp_path, text):
    """Written by hand, read by Hugging Face's library: the same ids and text both ways."""
    char = CharTokenizer("\n !,.:ABRTadehilnorstu")
    (tmp_path / "tokenizer.json").write_text(char.to_json())
    theirs = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert theirs.encode(text).ids == char.encode(text).tolist()
    assert theirs.decode(char.encode(text).tolist()) == text


def test_without_the_tokenizers_library_one_line_says_what_to_install(monkeypatch, folder):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # import tokenizers now raises ImportError
    with pytest.raises(TinyGPTError, match=r'pip install "tinygrad-gpt\[hf\]"'):
        BPETokenizer.from_folder(folder)


def test_a_folder_without_a_tokenizer_is_refused(tmp_path):
    with pytest.raises(TinyGPTError, match="has no tokenizer: neither tokenizer.json nor vocab.json"):
        BPETokenizer.from_folder(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "Nonsense"}}')
    with pytest.raises(TinyGPTError, match="tokenizer.json: not a valid tokenizer.json"):
        BPETokenizer.from_folder(tmp_path)


def test_a_bpe_checkpoint_keeps_its_tokenizer_and_refuses_a_replaced_one(tmp_path, bpe):
    model = GPT(GPTConfig(vocab_size=bpe.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=8))
    save_checkpoint(tmp_path, model, bpe, tiny_config(), step=1, best_val_loss=None)
    checkpoint = read_checkpoint(tmp_path)
    text = f"thou {ACCENTED}"
    assert checkpoint.vocab is None and load_tokenizer(checkpoint).encode(text).tolist() == bpe.encode(text).tolist()
    (tmp_path / "tokenizer.json").write_text(CharTokenizer("abc").to_json())
    with pytest.raises(CheckpointError, match="tokenizer.json: does not match the sha256"):
        load_tokenizer(checkpoint)


def test_best_and_init_from_do_not_mix(folder):
    with pytest.raises(UsageError, match="--best"):
        sample(init_from=folder, best=True, file=io.StringIO())
