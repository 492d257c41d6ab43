"""lossbook.train"""
