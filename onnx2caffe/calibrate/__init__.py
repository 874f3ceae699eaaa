"""`onnx2caffe calibrate`: ncnn int8 calibration tables from any Caffe model (prototxt + caffemodel).

methods.py (activation thresholds: kl, kl-legacy, aciq, minmax, percentile), weights.py (weight
scales), images.py (inputs, decoded in a thread pool), job.py (the two-pass job), table.py (the table).
Nothing here imports ONNX.
"""
