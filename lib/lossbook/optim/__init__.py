"""lossbook.optim"""
