# Cityscapes -> ACDC with the `vida` method (configs/_base_/methods/segformer.py); see acdc_ctta.py.
_base_ = ['./acdc_ctta.py']
custom_hooks = [dict(type='AdaptationSetupHook', method={{_base_.vida}})]
