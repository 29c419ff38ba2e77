"""humanego_drivers: every camera enters the graph here, through one topic contract.

Room for: the Aria source (VRS + MPS replay with projectaria-tools, live streaming through the
client SDK), the RealSense source (pyrealsense2 live and .db3 playback) and the recording source
(synthetic recordings, folders of frames + MPS CSVs). They publish ``camera/image_raw``,
``camera/camera_info``, optional depth, TF and ``hand_tracking``, stamped with device time.
"""
