#!/usr/bin/env python3
"""Production functions over N lines (default 80) in services/*/src, longest
first: `scripts/long-functions.py [N] [ROOT]`. Tests are left out
(#[cfg(test)] modules, #[test] functions, files under tests/). A function
counts from its `fn` line to its closing brace."""
import re, sys, glob
N = int(sys.argv[1]) if len(sys.argv) > 1 else 80
root = sys.argv[2] if len(sys.argv) > 2 else '.'
fn_re = re.compile(r'^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+"C"\s+)?fn\s+([A-Za-z_0-9]+)')

def strip(line, state):
    # remove strings/chars/comments crudely for brace counting
    out = []; i = 0
    while i < len(line):
        c = line[i]
        if state['block']:
            if line.startswith('*/', i): state['block'] = False; i += 2; continue
            i += 1; continue
        if state['str']:
            if c == '\\': i += 2; continue
            if c == '"': state['str'] = False
            i += 1; continue
        if state['raw'] is not None:
            end = '"' + '#' * state['raw']
            if line.startswith(end, i): i += len(end); state['raw'] = None; continue
            i += 1; continue
        if line.startswith('//', i): break
        if line.startswith('/*', i): state['block'] = True; i += 2; continue
        m = re.match(r'r(#*)"', line[i:])
        if m and (i == 0 or not (line[i-1].isalnum() or line[i-1] == '_')):
            state['raw'] = len(m.group(1)); i += len(m.group(0)); continue
        if c == '"': state['str'] = True; i += 1; continue
        if c == "'":
            m = re.match(r"'(\\.|[^\\'])'", line[i:])
            if m: i += len(m.group(0)); continue
        out.append(c); i += 1
    return ''.join(out)

res = []
for f in sorted(glob.glob(f'{root}/services/*/src/**/*.rs', recursive=True)):
    lines = open(f).read().split('\n')
    state = {'block': False, 'str': False, 'raw': None}
    depth = 0
    test_depth = None  # depth at which a cfg(test) module opened
    pending_test = False
    stack = []  # (name, start_line, depth_before)
    for ln, line in enumerate(lines, 1):
        s = line.strip()
        if s.startswith('#[cfg(test)]'): pending_test = True
        m = fn_re.match(line)
        code = strip(line, state)
        if m and test_depth is None:
            stack.append([m.group(7), ln, depth, False])
        if pending_test and re.match(r'\s*(pub\s+)?mod\s', line) and test_depth is None:
            test_depth = depth; pending_test = False
        elif pending_test and m:
            pending_test = False
            if stack and stack[-1][1] == ln: stack.pop()
        for ch in code:
            if ch == '{':
                depth += 1
                if stack and not stack[-1][3] and stack[-1][2] == depth - 1: stack[-1][3] = True
            elif ch == '}':
                depth -= 1
                if test_depth is not None and depth == test_depth: test_depth = None
                if stack and stack[-1][3] and depth == stack[-1][2]:
                    name, start, _, _ = stack.pop()
                    n = ln - start + 1
                    if n > N: res.append((n, f.replace(root + '/', ''), start, name))
            elif ch == ';':
                # a declaration without body (trait method)
                if stack and not stack[-1][3] and stack[-1][2] == depth: stack.pop()
        if s.startswith('#[test]') or s.startswith('#[tokio::test'): pending_test = True
for r in sorted(res, reverse=True):
    print(f'{r[0]:4} {r[1]}:{r[2]} {r[3]}')
print(f'total {len(res)}', file=sys.stderr)
