/**
 * C's strftime() in local time, for log-date and %(ftime) (uWSGI hands these formats to the C library).
 * The conversions glibc documents for the C locale; an unknown one is copied as written.
 */
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];

const pad = (n: number, width = 2, fill = '0'): string => String(n).padStart(width, fill);

function offset(d: Date): string {
  const minutes = -d.getTimezoneOffset();
  const sign = minutes < 0 ? '-' : '+';
  const abs = Math.abs(minutes);
  return `${sign}${pad(Math.floor(abs / 60))}${pad(abs % 60)}`;
}

function dayOfYear(d: Date): number {
  return Math.round((new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime() - new Date(d.getFullYear(), 0, 1).getTime()) / 86400000) + 1;
}

function zoneName(d: Date): string {
  const m = /\(([^)]+)\)$/.exec(d.toString());
  const name = m?.[1] ?? '';
  // node writes the long name ("Coordinated Universal Time"); C prints the abbreviation.
  return /^[A-Z]{2,5}$/.test(name) ? name : name === 'Coordinated Universal Time' ? 'UTC' : (name.match(/\b[A-Z]/g)?.join('') ?? '');
}

function conversion(c: string, d: Date): string | undefined {
  switch (c) {
    case 'a': return DAYS[d.getDay()]!.slice(0, 3);
    case 'A': return DAYS[d.getDay()]!;
    case 'b': case 'h': return MONTHS[d.getMonth()]!.slice(0, 3);
    case 'B': return MONTHS[d.getMonth()]!;
    case 'c': return `${conversion('a', d)} ${conversion('b', d)} ${pad(d.getDate(), 2, ' ')} ${conversion('T', d)} ${d.getFullYear()}`;
    case 'C': return pad(Math.floor(d.getFullYear() / 100));
    case 'd': return pad(d.getDate());
    case 'D': return `${pad(d.getMonth() + 1)}/${pad(d.getDate())}/${pad(d.getFullYear() % 100)}`;
    case 'e': return pad(d.getDate(), 2, ' ');
    case 'F': return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
    case 'H': return pad(d.getHours());
    case 'I': return pad(d.getHours() % 12 || 12);
    case 'j': return pad(dayOfYear(d), 3);
    case 'k': return pad(d.getHours(), 2, ' ');
    case 'l': return pad(d.getHours() % 12 || 12, 2, ' ');
    case 'm': return pad(d.getMonth() + 1);
    case 'M': return pad(d.getMinutes());
    case 'n': return '\n';
    case 'p': return d.getHours() < 12 ? 'AM' : 'PM';
    case 'P': return d.getHours() < 12 ? 'am' : 'pm';
    case 'r': return `${conversion('I', d)}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${conversion('p', d)}`;
    case 'R': return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    case 's': return String(Math.floor(d.getTime() / 1000));
    case 'S': return pad(d.getSeconds());
    case 't': return '\t';
    case 'T': return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    case 'u': return String(d.getDay() || 7);
    case 'w': return String(d.getDay());
    case 'x': return conversion('D', d);
    case 'X': return conversion('T', d);
    case 'y': return pad(d.getFullYear() % 100);
    case 'Y': return String(d.getFullYear());
    case 'z': return offset(d);
    case 'Z': return zoneName(d);
    case '%': return '%';
    default: return undefined;
  }
}

export function strftime(format: string, ms: number): string {
  const d = new Date(ms);
  let out = '';
  for (let i = 0; i < format.length; i++) {
    const ch = format[i]!;
    if (ch !== '%' || i + 1 === format.length) {
      out += ch;
      continue;
    }
    const c = format[++i]!;
    out += conversion(c, d) ?? `%${c}`;
  }
  return out;
}

/**
 * log-date: what goes before every log line that is not a request line. `true` or `1` (a bare --log-date) is
 * C's ctime(), any other value a strftime format; either way followed by " - ", as uWSGI writes it.
 */
export function logDatePrefix(setting: string, ms: number): string {
  return setting === 'true' || setting === '1' ? `${strftime('%a %b %e %T %Y', ms)} - ` : `${strftime(setting, ms)} - `;
}
