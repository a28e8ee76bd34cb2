-- One row per object; its bytes are in strata_chunks, chunk_bytes each (the last one shorter).
CREATE TABLE strata_objects (
    okey TEXT NOT NULL PRIMARY KEY,
    size INTEGER NOT NULL,
    chunk_bytes INTEGER NOT NULL
);
CREATE TABLE strata_chunks (
    okey TEXT NOT NULL,
    n INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (okey, n)
);
