"""lossbook.models"""
