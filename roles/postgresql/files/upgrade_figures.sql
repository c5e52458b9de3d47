-- What a major upgrade must carry over, one line each (fed to psql on standard input; \gexec runs each generated
-- query): "extension <database> <name>" for every extension, then "table <database>.<schema>.<table> <row count>
-- <md5 of its rows' text>" for every table. Rows are ordered by their text under the "C" collation, so the checksum
-- does not depend on the C library's collation rules, which differ between the old and the new image.
SELECT 'extension ' || current_database() || ' ' || extname FROM pg_extension ORDER BY extname;
SELECT format('SELECT %L || '' '' || count(*) || '' '' || md5(coalesce(string_agg(t::text, E''\n'' ORDER BY t::text COLLATE "C"), '''')) FROM %I.%I t',
              'table ' || current_database() || '.' || n.nspname || '.' || c.relname, n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND NOT c.relispartition
ORDER BY n.nspname, c.relname
\gexec
