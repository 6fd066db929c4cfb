"""Ranks agree on what they train, and a resume says what it changes: every rank's data, vocabulary
and config are compared with rank 0's at the start, and a resumed run's first line names other
data than the checkpoint's, or a --max-iters past the end of the learning-rate decay."""

import json
import random
import sys

import pytest

from test_distributed import FLAGS, mpiexec, needs_mpi
from tiny_runs import TINY_FLAGS, assert_one_line_error, tinygpt
from tinygrad_gpt.errors import DistributedError
from tinygrad_gpt.parallel.mpi import World

DIGESTS = {"data": "aa", "vocabulary": "bb", "config": "cc"}


class GatheringComm:
    """A communicator whose allgather hands back what every rank would have sent."""

    def __init__(self, everyone):
        self.everyone = everyone

    def allgather(self, mine):
        return self.everyone


def test_the_first_rank_that_differs_is_named_with_what_differs():
    other = {**DIGESTS, "data": "xx", "vocabulary": "yy"}
    world = World(rank=0, size=3, comm=GatheringComm([DIGESTS, DIGESTS, other]))
    with pytest.raises(DistributedError, match=r"^rank 2's data and vocabulary differ from rank 0's"):
        world.check_same(DIGESTS)
    World(rank=0, size=2, comm=GatheringComm([DIGESTS, dict(DIGESTS)])).check_same(DIGESTS)  # agreeing ranks pass


def shuffled_lines(corpus, path):
    """The corpus's lines in another order: another text with the same characters."""
    lines = corpus.read_text().splitlines(keepends=True)
    random.Random(0).shuffle(lines)
    path.write_text("".join(lines))
    return path


@needs_mpi
def test_a_rank_with_other_data_of_the_same_characters_ends_the_job(tmp_path, corpus):
    other, out = shuffled_lines(corpus, tmp_path / "other.txt"), tmp_path / "out"
    rank_1 = [":", "-n", 1, sys.executable, "-m", "tinygrad_gpt", "train", *FLAGS, "--data", other, "--out-dir", out]
    result = mpiexec(1, "train", *FLAGS, "--data", corpus, "--out-dir", out, more=rank_1)
    assert_one_line_error(result, 1, "rank 1's data differ from rank 0's")


@needs_mpi
def test_a_rank_with_another_vocabulary_ends_the_job_naming_it(tmp_path, corpus):
    other, out = tmp_path / "other.txt", tmp_path / "out"
    other.write_text(corpus.read_text() + "Zounds!\n")
    rank_1 = [":", "-n", 1, sys.executable, "-m", "tinygrad_gpt", "train", *FLAGS, "--data", other, "--out-dir", out]
    result = mpiexec(1, "train", *FLAGS, "--data", corpus, "--out-dir", out, more=rank_1)
    assert_one_line_error(result, 1, "rank 1's data and vocabulary differ from rank 0's")


def first_run(tmp_path, corpus):
    out = tmp_path / "out"
    result = tinygpt("train", *TINY_FLAGS, "--max-iters", 4, "--eval-interval", 2, "--data", corpus, "--out-dir", out)
    assert result.returncode == 0, result.stderr
    return out


def test_a_resume_on_other_data_says_so_in_its_first_line(tmp_path, corpus):
    out = first_run(tmp_path, corpus)
    other = shuffled_lines(corpus, tmp_path / "other.txt")
    resumed = tinygpt("train", "--resume", "--max-iters", 6, "--lr-decay-iters", 6, "--data", other, "--out-dir", out)
    assert resumed.returncode == 0, resumed.stderr
    first = resumed.stdout.splitlines()[0]
    assert first.startswith("resuming at step 4 (other data than the checkpoint's: sha256 "), first
    again = tinygpt("train", "--resume", "--max-iters", 8, "--lr-decay-iters", 8, "--data", other, "--out-dir", out)
    assert again.stdout.splitlines()[0].startswith("resuming at step 6: "), again.stdout  # the new data is the record


def test_a_checkpoint_saved_before_the_data_was_recorded_resumes_without_a_note(tmp_path, corpus):
    out = first_run(tmp_path, corpus)
    config = json.loads((out / "config.json").read_text())
    del config["train"]["data_sha256"], config["config_sha256"]
    (out / "config.json").write_text(json.dumps(config))
    other = shuffled_lines(corpus, tmp_path / "other.txt")
    resumed = tinygpt("train", "--resume", "--max-iters", 6, "--lr-decay-iters", 6, "--data", other, "--out-dir", out)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines()[0].startswith("resuming at step 4: "), resumed.stdout


def test_a_max_iters_past_the_decay_says_the_new_steps_run_at_min_lr(tmp_path, corpus):
    out = first_run(tmp_path, corpus)  # lr_decay_iters defaulted to max_iters, 4
    resumed = tinygpt("train", "--resume", "--max-iters", 6, "--data", corpus, "--out-dir", out)
    assert resumed.returncode == 0, resumed.stderr
    first = resumed.stdout.splitlines()[0]
    assert first.startswith(
        "resuming at step 4 (steps 4 to 6 run at min_lr 0.0003, past the decay's end at 4: --lr-decay-iters moves it): "
    ), first
