"""`python tests/failing_rank.py STEP ARGS...`: the `tinygpt ARGS...` command, but its training
raises an error at step STEP (a rank that breaks, for the MPI fault tests)."""

import sys

from tinygrad_gpt import cli, train

failing_step = int(sys.argv[1])
get_lr = train.get_lr


def get_lr_or_fail(step, *args):
    if step == failing_step:
        raise RuntimeError(f"a failure made at step {step}")
    return get_lr(step, *args)


train.get_lr = get_lr_or_fail
raise SystemExit(cli.main(sys.argv[2:]))
