# The EfficientViT benchmark with the `bn_stats` method (configs/_base_/methods/efficientvit.py);
# see efficientvit_camvid_ctta.py.
_base_ = ['./efficientvit_camvid_ctta.py']
custom_hooks = [dict(type='AdaptationSetupHook', method={{_base_.bn_stats}})]
