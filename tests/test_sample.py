"""tinygpt sample on a tiny checkpoint: any prompt either continues or is refused naming its
unknown characters; the default prompt works whatever the vocabulary."""

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiny_runs import tiny_config
from tinygrad_gpt.checkpoint import save_checkpoint
from tinygrad_gpt.data import CharTokenizer, format_chars
from tinygrad_gpt.errors import UsageError
from tinygrad_gpt.model import GPT, GPTConfig
from tinygrad_gpt.sample import sample

CONFIG = tiny_config()


def checkpoint(directory, vocab):
    model = GPT(GPTConfig(len(vocab), CONFIG.block_size, CONFIG.n_layer, CONFIG.n_head, CONFIG.n_embd))
    save_checkpoint(directory, model, CharTokenizer(vocab), CONFIG, step=1, best_val_loss=None)
    return directory


@pytest.fixture(scope="module")
def with_newline(tmp_path_factory):
    return checkpoint(tmp_path_factory.mktemp("ckpt"), "\n !,.:ABRTadehilnorstu")


def run(out_dir, prompt, n=5, **kwargs):
    out = io.StringIO()
    sample(out_dir, prompt, max_new_tokens=n, file=out, **kwargs)
    return out.getvalue()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=st.text(max_size=40))
def test_random_prompts_continue_or_name_their_unknown_characters(with_newline, prompt):
    tokenizer = CharTokenizer("\n !,.:ABRTadehilnorstu")
    unknown = tokenizer.unknown_chars(prompt)
    if not prompt:
        with pytest.raises(UsageError, match="empty"):
            run(with_newline, prompt)
    elif unknown:
        with pytest.raises(UsageError, match="vocabulary lacks") as info:
            run(with_newline, prompt)
        assert format_chars(unknown) in str(info.value)  # names exactly the unknown characters
    else:
        text = run(with_newline, prompt)
        assert text.startswith(prompt) and len(text) == len(prompt) + 5 + 1  # the new text, then "\n"
        assert not tokenizer.unknown_chars(text[len(prompt) : -1])


def test_default_prompt_is_a_newline(with_newline):
    assert run(with_newline, None).startswith("\n")


def test_default_prompt_works_without_a_newline_in_the_vocabulary(tmp_path):
    out_dir = checkpoint(tmp_path, "abc")
    text = run(out_dir, None)
    assert text[0] == "a" and len(text) == 1 + 5 + 1


@pytest.mark.parametrize(
    "flags, message", [({"seed": -1}, "--seed"), ({"temperature": 0}, "--temperature"), ({"top_k": 0}, "--top-k")]
)
def test_bad_sampling_flags_are_usage_errors(with_newline, flags, message):
    with pytest.raises(UsageError, match=message):
        run(with_newline, "A", **flags)
