# Runtime shared by every adaptation config: mmseg scope, logging, visualisation.
default_scope = 'mmseg'
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(type='StreamLogProcessor', by_epoch=False)  # names the segment in progress lines
log_level = 'INFO'
# Off, as in mmseg's own runtime: `tools/adapt.py --show-dir DIR` (and mmseg's `tools/test.py --show-dir`)
# turn it on; it names each drawing by round and segment, so later rounds do not overwrite earlier ones.
default_hooks = dict(timer=dict(type='IterTimerHook'),
                     logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
                     visualization=dict(type='StreamVisualizationHook', draw=False))
randomness = dict(seed=0, deterministic=False)
load_from = None
resume = False
