-- One row per object; its bytes are in strata_chunks, chunk_bytes each (the last one shorter).
-- Keys compare byte for byte (ascii_bin): the default collation would fold case.
CREATE TABLE strata_objects (
    okey VARCHAR(512) CHARACTER SET ascii COLLATE ascii_bin NOT NULL PRIMARY KEY,
    size BIGINT NOT NULL,
    chunk_bytes BIGINT NOT NULL
) ENGINE = InnoDB;
CREATE TABLE strata_chunks (
    okey VARCHAR(512) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    n INTEGER NOT NULL,
    data LONGBLOB NOT NULL,
    PRIMARY KEY (okey, n)
) ENGINE = InnoDB;
