"""Smoke run of the library: convert a small SegFormer to spectral layers and take one IMSE-style step.

The main job until the bundled benchmark exists: it shows, on CPU in seconds, that the pinned stack builds
mmseg's SegFormer, that spectral conversion is exact, and how few parameters IMSE adapts.
"""
import imse_seg  # noqa: F401  (before mmseg: installs the mmcv.ops stand-in)

import torch
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from imse_seg.core import count_parameters, spectral_code, spectralize, train_only

SEGFORMER_ROLES = ['backbone.layers.*.1.*.attn.attn', 'backbone.layers.*.1.*.ffn.layers.0',
                   'backbone.layers.*.1.*.ffn.layers.4']


def main() -> None:
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='EncoderDecoder',
        backbone=dict(type='MixVisionTransformer', embed_dims=32, num_layers=[2, 2, 2, 2],
                      num_heads=[1, 2, 5, 8]),
        decode_head=dict(type='SegformerHead', in_channels=[32, 64, 160, 256], in_index=[0, 1, 2, 3],
                         channels=128, num_classes=19))).eval()
    x = torch.randn(1, 3, 128, 256)
    with torch.no_grad():
        reference = model(x, mode='tensor')
    layers = spectralize(model, SEGFORMER_ROLES)
    with torch.no_grad():
        converted = model(x, mode='tensor')
    error = ((converted - reference).abs().max() / reference.abs().max()).item()
    print(f'converted {len(layers)} linear maps of a MiT-B0-sized SegFormer; '
          f'relative output change {error:.1e}')
    params = train_only(model, [layer.singular_values for layer in layers])
    print(f'parameters: {count_parameters(model)}')
    before = spectral_code(layers)
    optimizer = torch.optim.Adam(params, lr=1e-3)
    probs = model(x, mode='tensor').softmax(dim=1)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=1).mean()
    entropy.backward()
    optimizer.step()
    moved = sum((layer.singular_values.detach() - before[layer.name]).abs().sum().item() for layer in layers)
    print(f'one entropy step: entropy {entropy.item():.4f}, total |delta s| {moved:.4f}')


if __name__ == '__main__':
    main()
