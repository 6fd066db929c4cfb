"""The commands that measure and check rather than train: `tinygpt bench` (bench.py), `tinygpt
gradcheck` (gradcheck.py), and the PyTorch twin of our GPT that bench and the tests compare with."""
