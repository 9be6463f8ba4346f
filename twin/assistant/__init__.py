"""The knowledge assistant: answers residents' and workers' questions from the knowledge base (twin.knowledge).

Pure: jieba segmentation and BM25 (bm25s) over each document's fields, in memory; reads only its bundled data
files (userdict.txt, synonyms.yaml, stopwords.txt). See docs/assistant.md.

    from twin.assistant import Assistant
    a = Assistant.build(kb)
    answer = a.ask("我家能不能吃低保", audience="resident")
    answer.confident, answer.best.document.id, answer.as_dict("en")
"""

from twin.assistant.engine import Answer, Assistant, Match

__all__ = ["Answer", "Assistant", "Match"]
