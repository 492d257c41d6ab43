"""lossbook.calibration"""
