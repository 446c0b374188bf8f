"""Evaluation harness: gold datasets, metrics (ROUGE, BERTScore, retrieval, G-Eval judge), the runner and its report.

$ rag eval evals/data/gold.jsonl --out runs/today --fail-under recall@5=0.6
"""
