# The demo source model: a small timm VisionTransformer (6 blocks, width 96, 3 heads, 4x4 patches on 32x32
# images, 0.68 M parameters) trained on the clean digits train split by tools/train_cls_source.py.
model = dict(
    name='vit_tiny_patch16_224',
    num_classes=10,
    checkpoint='data/cls_demo/vit_digits.safetensors',
    img_size=32, patch_size=4, embed_dim=96, depth=6, num_heads=3)
# timm's eval transform for the images (mean/std from the model's pretrained_cfg); ImageNet-C images are
# already at the input size, so nothing is cropped away.
transform = dict(input_size=(3, 32, 32), crop_pct=1.0)
