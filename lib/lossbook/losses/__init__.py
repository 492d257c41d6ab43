"""lossbook.losses"""
