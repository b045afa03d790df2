"""solvers/learned"""
