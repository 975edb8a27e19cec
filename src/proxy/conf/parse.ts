/**
 * The nginx configuration grammar, tree level: tokens to directives and blocks. Pure: `include` is expanded
 * later by the loader, and whether a directive may have a block is checked against the directive tables.
 */
import { ProxyConfError } from './errors.js';
import { tokenize } from './lexer.js';

export interface ConfNode {
  name: string;
  args: string[];
  /** Per argument: it was written in quotes. */
  quoted: boolean[];
  file: string;
  /** The line of the `;` or `{` ending the directive, which is the line nginx reports. */
  line: number;
  /** Present when the directive was followed by `{ ... }`. */
  block: ConfNode[] | undefined;
}

export function parseConf(text: string, file: string): ConfNode[] {
  const { tokens, lastLine } = tokenize(text, file);
  let pos = 0;

  function parseList(depth: number): ConfNode[] {
    const list: ConfNode[] = [];
    let words: string[] = [];
    let quoted: boolean[] = [];
    for (;;) {
      if (pos >= tokens.length) {
        if (words.length > 0) throw new ProxyConfError('SYNTAX', 'unexpected end of file, expecting ";" or "}"', { file, line: lastLine });
        if (depth > 0) throw new ProxyConfError('SYNTAX', 'unexpected end of file, expecting "}"', { file, line: lastLine });
        return list;
      }
      const t = tokens[pos++]!;
      if (t.kind === 'word') {
        words.push(t.value);
        quoted.push(t.quoted);
        continue;
      }
      if (t.kind === '}') {
        if (words.length > 0 || depth === 0) throw new ProxyConfError('SYNTAX', 'unexpected "}"', { file, line: t.line });
        return list;
      }
      if (words.length === 0) throw new ProxyConfError('SYNTAX', `unexpected "${t.kind}"`, { file, line: t.line });
      const node: ConfNode = { name: words[0]!, args: words.slice(1), quoted: quoted.slice(1), file, line: t.line, block: undefined };
      if (t.kind === '{') node.block = parseList(depth + 1);
      list.push(node);
      words = [];
      quoted = [];
    }
  }

  return parseList(0);
}
