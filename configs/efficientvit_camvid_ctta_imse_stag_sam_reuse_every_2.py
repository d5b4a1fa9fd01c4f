# The EfficientViT benchmark with the `imse_stag_sam_reuse_every_2` method (configs/_base_/methods/efficientvit.py);
# see efficientvit_camvid_ctta.py.
_base_ = ['./efficientvit_camvid_ctta.py']
custom_hooks = [dict(type='AdaptationSetupHook', method={{_base_.imse_stag_sam_reuse_every_2}})]
