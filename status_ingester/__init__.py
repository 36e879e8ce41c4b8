"""status_ingester"""
