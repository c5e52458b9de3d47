-- One line per table of the database: <schema>.<table>|<row count>|<checksum of its rows>.
-- The checksum adds up a 64-bit slice of each row's md5: it does not depend on the rows' order, so it needs no sort
-- and constant memory, and the nightly backup takes it on the live database in the snapshot of its dump
-- (borgstack-backup.py); the restore drill takes it again on the restored copy (playbooks/restore-drill.yml).
-- Fed to psql on standard input (\gexec runs each generated query).
SELECT format('SELECT %L || ''|'' || count(*) || ''|'' || '
              'coalesce(sum((''x'' || left(md5(t::text), 16))::bit(64)::bigint), 0) FROM %I.%I t',
              n.nspname || '.' || c.relname, n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%' AND NOT c.relispartition
ORDER BY n.nspname, c.relname
\gexec
