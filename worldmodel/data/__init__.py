"""Episode data: records, the crash-safe HDF5 store and load-time fps striding."""

from worldmodel.data.episodes import (
    SCHEMA_VERSION,
    DatasetError,
    EpisodeFile,
    EpisodeRecord,
    StridedEpisode,
    consolidate,
    finished_parts,
    remove_parts,
    stride_episode,
    write_episode_part,
)

__all__ = [
    "SCHEMA_VERSION",
    "DatasetError",
    "EpisodeFile",
    "EpisodeRecord",
    "StridedEpisode",
    "consolidate",
    "finished_parts",
    "remove_parts",
    "stride_episode",
    "write_episode_part",
]
