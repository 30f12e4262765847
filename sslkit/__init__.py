"""sslkit: self-supervised learning you can read, run and compare.

The pieces, one module per concern: :mod:`sslkit.data` (datasets as uint8 tensors),
:mod:`sslkit.augment` (batched augmentation), :mod:`sslkit.backbones` (encoders),
:mod:`sslkit.losses`, :mod:`sslkit.methods` (one file per method), :mod:`sslkit.loop` (the
one training loop), :mod:`sslkit.train` (runs on it), :mod:`sslkit.evaluate` (frozen-feature protocols),
:mod:`sslkit.profiles` (quick CPU / full GPU settings), :mod:`sslkit.viz` and
:mod:`sslkit.widgets` (notebook figures and controls), :mod:`sslkit.cli`.
"""

__version__ = "0.1.0"
