// The code editor: CodeMirror 6, bundled into the page at build time.
//
// It lives in a shadow root. CodeMirror styles itself at run time; in a
// document it does so with a <style> element, which the page's
// Content-Security-Policy (no inline styles, no nonces) refuses, while in
// a shadow root it uses constructed stylesheets (adoptedStyleSheets),
// which the policy does not cover. So the styles of the editor are given
// here as a theme, not in style.css, whose rules do not reach inside.

import { basicSetup, EditorView } from 'codemirror';
import { Compartment, EditorState, Prec } from '@codemirror/state';
import { keymap } from '@codemirror/view';
import { StreamLanguage } from '@codemirror/language';
import { python } from '@codemirror/lang-python';
import { javascript } from '@codemirror/lang-javascript';
import { shell } from '@codemirror/legacy-modes/mode/shell';

const LANGUAGES = {
  python: () => python(),
  node: () => javascript(),
  bash: () => StreamLanguage.define(shell),
};

/**
 * @param {HTMLElement} parent
 * @param {{doc: string, language: string, onRun: () => void, label: string}} options
 */
const theme = EditorView.theme({
  '&': { flex: '1', minHeight: '0', fontSize: '13.5px', backgroundColor: '#ffffff' },
  '&.cm-focused': { outline: 'none' },
  '.cm-scroller': {
    fontFamily: "ui-monospace, 'DejaVu Sans Mono', 'Liberation Mono', Menlo, Consolas, monospace",
    lineHeight: '1.5',
  },
  '.cm-gutters': { backgroundColor: '#f5f6f8', borderRight: '1px solid #d9dee5', color: '#8a94a3' },
});

export function createEditor(host, { doc, language, onRun, label }) {
  const root = host.attachShadow({ mode: 'open' });
  const languageSlot = new Compartment();
  const run = () => {
    onRun();
    return true;
  };
  const view = new EditorView({
    parent: root,
    root,
    state: EditorState.create({
      doc,
      extensions: [
        Prec.highest(keymap.of([{ key: 'Mod-Enter', run }])),
        basicSetup,
        languageSlot.of(LANGUAGES[language]()),
        EditorView.contentAttributes.of({ 'aria-label': label }),
        theme,
      ],
    }),
  });
  return {
    view,
    get code() {
      return view.state.doc.toString();
    },
    set code(text) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
    },
    setLanguage(name) {
      view.dispatch({ effects: languageSlot.reconfigure(LANGUAGES[name]()) });
    },
    focus() {
      view.focus();
    },
  };
}
