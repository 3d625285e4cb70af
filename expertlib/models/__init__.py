"""The networks: B, the experts, and the paper's released weights.

``resnet`` (BiT's ResNet-v2, B's architecture), ``adapters`` (residual adapters and full experts, held in one
bank with B), ``candidates`` (one notion of a network to score or transfer: B, B+extra, an expert),
``weights`` (BiT ``.npz``, timm state dicts, safetensors files), ``tfcheckpoint`` and ``convert`` (the
released experts' SavedModels read without TensorFlow) and ``download_checks`` (what a downloaded checkpoint
must be).

May import: utils, datasets (an expert's subtree and classes come from the hierarchy).
"""
