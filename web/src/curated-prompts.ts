/**
 * The curated prompts list: editable in place, one text field per prompt, with add and
 * remove. `onChange` fires after every edit with the whole list; `onUse` when a prompt's
 * "Queue" button is pressed.
 */
export class CuratedPrompts {
  private prompts: string[];

  constructor(
    private readonly list: HTMLOListElement,
    private readonly addInput: HTMLInputElement,
    addButton: HTMLButtonElement,
    initial: string[],
    private readonly handlers: { onChange(prompts: string[]): void; onUse(prompt: string): void },
  ) {
    this.prompts = [...initial];
    const add = (): void => {
      const text = this.addInput.value.trim();
      if (!text) return;
      this.prompts.push(text);
      this.addInput.value = '';
      this.render();
      this.handlers.onChange(this.values());
    };
    addButton.addEventListener('click', add);
    this.addInput.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') add();
    });
    this.render();
  }

  values(): string[] {
    return this.prompts.map((p) => p.trim()).filter((p) => p.length > 0);
  }

  private render(): void {
    this.list.replaceChildren(
      ...this.prompts.map((prompt, i) => {
        const item = document.createElement('li');
        item.dataset.testid = 'curated-item';
        const input = document.createElement('input');
        input.type = 'text';
        input.value = prompt;
        input.setAttribute('aria-label', `curated prompt ${i + 1}`);
        input.addEventListener('change', () => {
          this.prompts[i] = input.value;
          this.handlers.onChange(this.values());
        });
        const use = button('Queue', `queue curated prompt ${i + 1}`, () => {
          const text = (this.prompts[i] ?? '').trim();
          if (text) this.handlers.onUse(text);
        });
        const remove = button('Remove', `remove curated prompt ${i + 1}`, () => {
          this.prompts.splice(i, 1);
          this.render();
          this.handlers.onChange(this.values());
        });
        item.append(input, use, remove);
        return item;
      }),
    );
  }
}

function button(text: string, label: string, onClick: () => void): HTMLButtonElement {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  b.setAttribute('aria-label', label);
  b.addEventListener('click', onClick);
  return b;
}
