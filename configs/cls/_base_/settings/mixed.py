# Mixed: all 15 corruptions at severity 5 shuffled together (SAR's mixed shifts).
stream = dict(type='MixedStream', severity=5)
