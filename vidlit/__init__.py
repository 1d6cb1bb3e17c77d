"""vidlit: video understanding training on PyTorch Lightning.

A shared video backbone, pretrained by masked video modeling and video-text contrastive
learning, and plug-in task heads trained with one command: ``vidlit fit --config RECIPE``.
"""

__version__ = "0.1.0"
