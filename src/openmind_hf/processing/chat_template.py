"""The OpenMind chat template: ChatML roles, media blocks, `{% generation %}` markers and a thinking switch.

- `enable_thinking=False` (default): every assistant turn, and the generation prompt, starts with an empty
  `<think>\\n\\n</think>\\n\\n` that is part of the prompt (unlabelled), exactly as `generate` sees it.
- `enable_thinking=True`: the assistant writes `<think>\\n{reasoning_content}\\n</think>\\n\\n{answer}`; all of it
  is inside the generation markers, so it is labelled in training.
"""

CHAT_TEMPLATE = (
    "{%- set thinking = enable_thinking | default(false) -%}"
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{ content }}"
    "{%- elif content is not none -%}"
    "{%- for block in content -%}"
    "{%- if block['type'] in ['image', 'image_url'] -%}<image>"
    "{%- elif block['type'] in ['audio', 'input_audio'] -%}<audio>"
    "{%- elif block['type'] == 'video' -%}<video>"
    "{%- elif block['type'] == 'text' -%}{{ block['text'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{%- endmacro -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{%- set reasoning = message['reasoning_content'] if message['reasoning_content'] is defined and message['reasoning_content'] else '' -%}"
    "{%- if thinking -%}"
    "{% generation %}{{- '<think>\\n' + (reasoning | trim) + '\\n</think>\\n\\n' + render(message['content']) + '<|im_end|>' -}}{% endgeneration %}"
    "{%- else -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{% generation %}{{- render(message['content']) + '<|im_end|>' -}}{% endgeneration %}"
    "{%- endif -%}"
    "{%- else -%}"
    "{{- render(message['content']) + '<|im_end|>' -}}"
    "{%- endif -%}"
    "{{- '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if not thinking -%}{{- '<think>\\n\\n</think>\\n\\n' -}}{%- endif -%}"
    "{%- endif -%}"
)

__all__ = ["CHAT_TEMPLATE"]
