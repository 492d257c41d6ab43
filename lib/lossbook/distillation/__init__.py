"""lossbook.distillation"""
