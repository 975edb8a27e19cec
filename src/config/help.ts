/** `tsgi --help`, generated from the option table. */
import { OPTIONS, type OptionDef, type Section } from './options.js';

function flags(o: OptionDef): string {
  const names = [o.name, ...o.aliases].map((n) => `--${n}`);
  if (o.short) names.unshift(`-${o.short}`);
  const meta = o.kind === 'bool' ? '' : o.implicit !== undefined ? ` [${o.meta ?? 'VALUE'}]` : ` ${o.meta ?? 'VALUE'}`;
  return names.join(', ') + meta;
}

export function helpText(version: string): string {
  const lines: string[] = [
    `tsgi ${version}: the uWSGI application server, in TypeScript`,
    '',
    'Usage: tsgi [options...] [config.ini]',
    '',
    'Every option can also be written in an ini file ([uwsgi] section, key = value) or set in the',
    'environment as TSGI_NAME or UWSGI_NAME (upper case, - as _). uWSGI options tsgi does not implement',
    'yet are refused with a message saying so, never ignored.',
  ];
  const sections: Section[] = ['Configuration', 'Sockets', 'Processes', 'Reloading and limits', 'Applications', 'Python applications',
    'Node applications', 'Static files', 'Routing', 'Caching', 'Logging', 'Monitoring', 'Daemons and cron', 'Emperor'];
  for (const s of sections) {
    lines.push('', `${s}:`);
    for (const o of OPTIONS.filter((x) => x.section === s)) {
      const f = flags(o);
      const notes: string[] = [];
      if (o.default !== undefined && o.kind !== 'bool') notes.push(`default ${o.default}`);
      if (o.repeat) notes.push('repeatable');
      const help = o.help + (notes.length ? ` (${notes.join(', ')})` : '');
      lines.push(f.length < 34 ? `  ${f.padEnd(34)}${help}` : `  ${f}\n  ${' '.repeat(34)}${help}`);
    }
  }
  return lines.join('\n') + '\n';
}
