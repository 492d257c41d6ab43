"""lossbook.metrics"""
