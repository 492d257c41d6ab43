"""lossbook.scaling"""
