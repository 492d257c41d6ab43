"""lossbook.alignment"""
