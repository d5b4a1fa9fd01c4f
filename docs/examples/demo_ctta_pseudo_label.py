# The tiny SegFormer demo (configs/demo_ctta.py) with the PseudoLabel method of pseudo_label.py, which
# custom_imports imports (it must be importable: run with PYTHONPATH=docs/examples).
_base_ = ['../../configs/demo_ctta.py']
custom_imports = dict(imports=['imse_seg.seg', 'pseudo_label'], allow_failed_imports=False)
custom_hooks = [dict(type='AdaptationSetupHook',
                     method=dict(type='PseudoLabel', optimizer=dict(type='SGD', lr=1e-3), threshold=0.9))]
