-- One line per table of the database: <schema>.<table>|<row count>|<md5 of its rows' text, ordered>.
-- Fed to psql on standard input (\gexec runs each generated query).
SELECT format('SELECT %L || ''|'' || count(*) || ''|'' || md5(coalesce(string_agg(t::text, E''\n'' ORDER BY t::text), '''')) FROM %I.%I t',
              n.nspname || '.' || c.relname, n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND NOT c.relispartition
ORDER BY n.nspname, c.relname
\gexec
