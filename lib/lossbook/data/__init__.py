"""lossbook.data"""
