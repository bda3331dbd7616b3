"""Building a character from subtitled episodes (``rolecast ingest``).

This package holds the framework-free first stage: reading subtitle files and grouping their
lines into scenes. Nothing here touches audio, video or the network.

- :mod:`.subtitles`: ``read_subtitles(data, name)`` turns the bytes of an ASS, SSA, SRT or
  WebVTT file into :class:`~.subtitles.Subtitles`, a tuple of cleaned
  :class:`~.subtitles.SubLine` objects each marked ``dialogue``, ``sign`` or ``song``.
- :mod:`.scenes`: ``group_scenes(lines)`` cuts the dialogue into scenes at silences and
  ``make_scenes(groups, episode)`` turns them into canon :class:`~rolecast.character.model.Scene`
  objects.
- :mod:`.encoding`, :mod:`.markup`, :mod:`.kinds`, :mod:`.languages`, :mod:`.speakers`: the
  pieces ``read_subtitles`` is made of (text encoding, markup removal, sign and song rules,
  scripts of bilingual lines, speaker prefixes).

The optional packages ``pysubs2`` and ``charset-normalizer`` are imported only when needed.
"""
