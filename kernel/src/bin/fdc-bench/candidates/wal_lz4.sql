-- Candidate server setting: compress full-page images in the WAL (new sessions of this database).
DO $$ BEGIN
    EXECUTE format('ALTER DATABASE %I SET wal_compression = lz4', current_database());
END $$;
