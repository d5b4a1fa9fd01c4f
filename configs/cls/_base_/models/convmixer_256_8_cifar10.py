# The published CIFAR-10 source model: ConvMixer-256/8 (kernel 9, patch 4; 0.72 M parameters) of
# kentaroy47/vision-transformers-cifar10 (MIT; 90.54 % on the CIFAR-10 test set, 86.85 % on the JPEG copies
# of ../shared/data/cifar10), read from the shared folder ($IMSE_SEG_CONVMIXER_CIFAR10 or --checkpoint move
# it) and renamed from its sequential layout to timm's ConvMixer (imse_seg/cls/convmixer.py).
model = dict(
    name='convmixer_256_8_k9_p4',
    num_classes=10,
    checkpoint='shared:weights/convmixer_256_8_k9_p4_cifar10.pth',
    checkpoint_keys=dict(type='SequentialConvMixerKeys', depth=8))
# Its training transform's normalisation (mean = std = 0.5, from the model's pretrained_cfg); the 32 x 32
# images are used as they are.
transform = dict(input_size=(3, 32, 32), crop_pct=1.0)
