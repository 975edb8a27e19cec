/**
 * The nginx configuration grammar, token level: a pure function from text to tokens.
 *
 * Words are separated by whitespace; `;`, `{` and `}` are tokens of their own; `#` at the start of a word
 * runs to the end of the line; a word starting with `"` or `'` runs to the matching quote and must be
 * followed by whitespace, `;`, `{` or `}`. A backslash escapes the next character: `\"`, `\'` and `\\` give
 * the character, `\n` `\r` `\t` give the control character, any other pair is kept as written (so regexes
 * like `\.` survive). `${` opens a variable name, and the `}` closing it is part of the word.
 */
import { ProxyConfError } from './errors.js';

export type TokenKind = 'word' | ';' | '{' | '}';

export interface Token {
  kind: TokenKind;
  /** The word with quotes removed and escapes applied; the punctuation itself for the others. */
  value: string;
  /** The word was written in quotes (only `if` cares). */
  quoted: boolean;
  line: number;
}

function isSpace(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\r' || c === '\n';
}

function unescape(raw: string): string {
  if (raw.indexOf('\\') < 0) return raw;
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === '\\' && i + 1 < raw.length) {
      const n = raw[i + 1]!;
      if (n === '"' || n === "'" || n === '\\') out += n;
      else if (n === 'n') out += '\n';
      else if (n === 'r') out += '\r';
      else if (n === 't') out += '\t';
      else out += c + n;
      i++;
    } else out += c;
  }
  return out;
}

export interface Tokens {
  tokens: Token[];
  /** The line the text ends on, where an end-of-file error points. */
  lastLine: number;
}

export function tokenize(text: string, file: string): Tokens {
  const tokens: Token[] = [];
  let line = 1;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i]!;
    if (c === '\n') {
      line++;
      i++;
      continue;
    }
    if (isSpace(c)) {
      i++;
      continue;
    }
    if (c === '#') {
      while (i < n && text[i] !== '\n') i++;
      continue;
    }
    if (c === ';' || c === '{' || c === '}') {
      tokens.push({ kind: c, value: c, quoted: false, line });
      i++;
      continue;
    }
    const startLine = line;
    if (c === '"' || c === "'") {
      let j = i + 1;
      let raw = '';
      for (;;) {
        if (j >= n) throw new ProxyConfError('SYNTAX', `unexpected end of file, expecting "${c}"`, { file, line });
        const ch = text[j]!;
        if (ch === '\\' && j + 1 < n) {
          raw += ch + text[j + 1]!;
          if (text[j + 1] === '\n') line++;
          j += 2;
          continue;
        }
        if (ch === c) break;
        if (ch === '\n') line++;
        raw += ch;
        j++;
      }
      i = j + 1;
      if (i < n) {
        const after = text[i]!;
        if (!isSpace(after) && after !== ';' && after !== '{' && after !== '}') {
          throw new ProxyConfError('SYNTAX', `unexpected "${after}"`, { file, line });
        }
      }
      tokens.push({ kind: 'word', value: unescape(raw), quoted: true, line: startLine });
      continue;
    }
    // A bare word.
    let j = i;
    let raw = '';
    let inVar = false;
    while (j < n) {
      const ch = text[j]!;
      if (ch === '\\' && j + 1 < n) {
        raw += ch + text[j + 1]!;
        j += 2;
        continue;
      }
      if (inVar) {
        if (ch === '}') inVar = false;
        raw += ch;
        j++;
        continue;
      }
      if (ch === '$' && text[j + 1] === '{') {
        inVar = true;
        raw += '${';
        j += 2;
        continue;
      }
      if (isSpace(ch) || ch === ';' || ch === '{' || ch === '}') break;
      raw += ch;
      j++;
    }
    i = j;
    tokens.push({ kind: 'word', value: unescape(raw), quoted: false, line: startLine });
  }
  return { tokens, lastLine: line };
}
