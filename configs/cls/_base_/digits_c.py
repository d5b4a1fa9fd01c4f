# The offline demo's data: digits corrupted as ImageNet-C by tools/make_cls_demo_data.py (test split; the
# tune split, for learning-rate tuning, is in work_dirs/cls_demo/digits_c/tune).
data = dict(source=dict(type='CorruptionFolders', root='work_dirs/cls_demo/digits_c/test'), batch_size=32,
            num_workers=0)
seed = 0
