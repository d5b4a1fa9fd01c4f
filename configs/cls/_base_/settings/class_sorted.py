# Label shift at its harshest: the continual sequence with each corruption's images sorted by class (one class
# after another, as the CIFAR-10 test folders are ordered), where BatchNorm's test moments see a single class.
stream = dict(type='SequentialStream', severities=[5], rounds=1, order=dict(type='ClassSortedOrder'))
