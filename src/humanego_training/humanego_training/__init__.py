"""humanego_training: the offline side, run with ``ros2 run`` / ``humanego run``.

Room for: ``preprocess`` (recordings -> training_data.json + images, EgoMimic HDF5 export),
datasets and normalisation, ``train`` (resumable, EMA, DDP), ``evaluate`` (the metrics of
DESIGN.md section 6) and ``export`` (ONNX bundle for the policy node).
"""
